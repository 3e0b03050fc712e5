"""An answer that ends before its newest bars is asked again at once in the same run; a real gap is not.

Through the real client over the socket to the simulator and the real PostgreSQL; what a run stored is
compared with what the simulator serves. See docs/ib-behaviours.md#a-short-tail-asked-again.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from ibkr_market_data import calendars
from ibkr_market_data.daily_plan import lookback_sessions
from ibkr_market_data.repository import RunContext
from ibkr_market_data.tasks import daily
from tests.integration.daily_runs import (
    DAG_ID,
    attempts,
    daily_run,
    no_data,
    start_market,
    stored_daily,
    stored_intraday,
)

TUE, WED, THU = dt.date(2025, 6, 24), dt.date(2025, 6, 25), dt.date(2025, 6, 26)


def after_close(day: dt.date) -> dt.datetime:
    """Return an hour after the US close of ``day``: the moment its daily run looks at IB."""
    return calendars.session_close("NASDAQ", day) + dt.timedelta(hours=1)


def short_sessions(url: str, timeframe: str) -> dict[dt.date, tuple[int, int, int, bool, bool]]:
    """Return AAPL's short sessions of ``timeframe``: bars, scheduled, answers, adds up, settled."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT k.session, k.bars, k.scheduled, k.answers, k.agrees_with_daily, k.settled_at IS NOT NULL
            FROM short_sessions k JOIN symbols s ON s.id = k.symbol_id
            WHERE s.symbol = 'AAPL' AND k.timeframe = %s
            """,
            (timeframe,),
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def requests_sent(url: str, run_id: str) -> list[int]:
    """Return the requests each attempt of the run recorded, oldest first."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT requests_sent FROM collection_logs WHERE run_id = %s ORDER BY id", (run_id,)
        ).fetchall()
    return [sent for (sent,) in rows]


def test_a_daily_answer_split_before_its_newest_bar_is_asked_again_and_stored_whole(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": {"split_answer": 1}}
    )
    run = daily_run(market, WED, lookback=3)

    assert market.simulator.faults.fired().get("split_answer") == 1, "the answer was split"
    first = lookback_sessions("NASDAQ", WED, 3, after_close(WED))[0]
    assert stored_daily(market_db, "AAPL") == market.served_daily("AAPL", first, WED)
    assert no_data(market_db, "AAPL") == {}, "nothing left to ask again"
    assert run.problems == "" and run.requests == 2
    assert attempts(market_db, run.run_id) == [("AAPL", "1day", "completed", 1)]
    assert requests_sent(market_db, run.run_id) == [2]


@pytest.mark.parametrize(
    ("timeframe", "bar_seconds", "daily_first", "sessions"),
    [("5min", 300, False, (TUE, WED)), ("1min", 60, True, (WED,))],
    ids=["5min-without-a-daily-bar", "1min-against-its-daily-bar"],
)
def test_an_intraday_answer_split_before_its_newest_bar_is_asked_again_and_stored_whole(
    tws_simulator_factory, monkeypatch, market_db, timeframe, bar_seconds, daily_first, sessions
):
    market = start_market(tws_simulator_factory, monkeypatch, market_db, after_close(WED))
    if daily_first:
        daily_run(market, WED, lookback=1)
    market.simulator.faults.set("AAPL", split_answer=1)
    run = daily_run(market, WED, lookback=len(sessions), timeframe=timeframe)

    assert market.simulator.faults.fired().get("split_answer") == 1, "the answer was split"
    served = [bar for day in sessions for bar in market.served_intraday("AAPL", day, bar_seconds)]
    assert stored_intraday(market_db, "AAPL", timeframe) == served
    assert no_data(market_db, "AAPL", timeframe) == {} and short_sessions(market_db, timeframe) == {}
    assert run.problems == "" and run.requests == 2
    assert requests_sent(market_db, run.run_id) == [2]


def test_a_collect_holds_a_short_intraday_tail_against_the_planned_close_without_a_calendar(
    tws_simulator_factory, monkeypatch, market_db
):
    """The plan hands each intraday target its newest close: a collect task builds no calendar."""
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": {"split_answer": 1}}
    )
    run = RunContext(DAG_ID, "manual__short_tail_without_a_calendar")
    params = {"date": WED.isoformat(), "symbols": ["AAPL"], "lookback_sessions": 1, "timeframe": "1min"}
    [group] = daily.plan(WED.isoformat(), params, run, now=market.clock())
    looked_up: list[str] = []
    table = calendars.session_table
    monkeypatch.setattr(
        calendars, "session_table", lambda exchange: looked_up.append(exchange) or table(exchange)
    )

    outcome = daily.collect(group, run)

    assert market.simulator.faults.fired().get("split_answer") == 1, "the answer was split"
    assert market.historical_requests("AAPL") == 2, "the short tail was asked again"
    assert looked_up == [], "the collect task looked up an exchange calendar"
    assert outcome["completed"] == 1
    assert stored_intraday(market_db, "AAPL") == market.served_intraday("AAPL", WED)


@pytest.mark.parametrize("timeframe", ["1day", "1min"])
def test_a_retried_try_does_not_ask_a_short_tail_again(
    tws_simulator_factory, monkeypatch, market_db, timeframe
):
    """One re-ask per target and run: a second try of the group accepts its short answer at once."""
    monkeypatch.setenv("IBKR_MAX_MAPPED_TASKS", "1")  # AAPL and MSFT in one group, retried together
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(WED),
        faults={"AAPL": {"split_answer": 3}, "MSFT": {"pacing_violation": 1}},
    )
    lookback = 3 if timeframe == "1day" else 1
    run = daily_run(market, WED, symbols=("AAPL", "MSFT"), lookback=lookback, timeframe=timeframe)

    assert market.historical_requests("AAPL") == 3, "two in the first try, one in the second"
    assert run.problems == ""
    if timeframe == "1day":
        assert no_data(market_db, "AAPL") == {WED: False}, (
            "three split answers: a gap the next run asks again"
        )
    else:
        assert short_sessions(market_db, "1min") == {WED: (389, 390, 2, False, False)}, (
            "two tries, two answers"
        )
    assert daily_run(market, WED, symbols=("AAPL",), lookback=lookback, timeframe=timeframe).requests == 1
    if timeframe == "1day":
        first = lookback_sessions("NASDAQ", WED, 3, after_close(WED))[0]
        assert stored_daily(market_db, "AAPL") == market.served_daily("AAPL", first, WED)
    else:
        assert stored_intraday(market_db, "AAPL") == market.served_intraday("AAPL", WED)


@pytest.mark.parametrize(
    ("faults", "daily_first"),
    [
        ({"halts": {"date": WED.isoformat(), "from": "11:00", "to": "13:30"}}, True),
        ({"halts": {"date": WED.isoformat(), "from": "11:00", "to": "13:30"}}, False),
        ({"illiquid_minutes": 0.25}, True),
        ({"illiquid_minutes": 0.25}, False),
        ({"halts": {"date": WED.isoformat(), "from": "15:30", "to": "16:00"}}, True),
    ],
    ids=[
        "halt",
        "halt-without-a-daily-bar",
        "illiquid-minutes",
        "illiquid-minutes-without-a-daily-bar",
        "halt-to-the-close",
    ],
)
def test_halts_and_quiet_minutes_before_the_close_or_explained_by_the_daily_bar_cost_no_extra_request(
    tws_simulator_factory, monkeypatch, market_db, faults, daily_first
):
    """The close is there (a gap inside the session), or the stored daily bar explains its absence."""
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": faults}
    )
    if daily_first:
        daily_run(market, WED, lookback=1)
    minutes = market.served_intraday("AAPL", WED)
    assert len(minutes) < 390, "the fault left minutes without a trade"

    for answers in (1, 2):
        run = daily_run(market, WED, lookback=1, timeframe="1min")
        assert run.requests == 1, "no extra request"
        expected = (len(minutes), 390, answers, daily_first, daily_first and answers == 2)
        assert short_sessions(market_db, "1min") == {WED: expected}, "recorded as before"
    assert stored_intraday(market_db, "AAPL") == minutes


def test_a_halt_to_the_close_without_a_daily_bar_costs_one_extra_request_and_changes_nothing(
    tws_simulator_factory, monkeypatch, market_db
):
    halt = {"date": WED.isoformat(), "from": "15:30", "to": "16:00"}
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": {"halts": halt}}
    )
    run = daily_run(market, WED, lookback=1, timeframe="1min")

    assert run.requests == 2, "nothing explains the missing close: asked once more"
    assert stored_intraday(market_db, "AAPL") == market.served_intraday("AAPL", WED)
    assert short_sessions(market_db, "1min") == {WED: (360, 390, 1, False, False)}, "as before: one answer"


def test_a_session_without_a_trade_at_the_tail_costs_one_extra_request_and_is_recorded_as_before(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(WED),
        faults={"AAPL": {"illiquid_sessions": [WED.isoformat()]}},
    )
    assert not market.simulator.served.traded("AAPL", WED)

    run = daily_run(market, WED, lookback=3)
    assert run.problems == "" and run.requests == 2, "asked once more, then accepted"
    assert attempts(market_db, run.run_id) == [("AAPL", "1day", "completed", 1)]
    assert no_data(market_db, "AAPL") == {WED: False}, "two answers of one run settle nothing"
    first = lookback_sessions("NASDAQ", WED, 3, after_close(WED))[0]
    assert stored_daily(market_db, "AAPL") == market.served_daily("AAPL", first, WED)

    market.at(after_close(THU))
    assert daily_run(market, THU, lookback=3).requests == 1, "WED inside the answer now: no extra request"
    assert no_data(market_db, "AAPL") == {WED: True}, "left out again past it: settled as before"


def test_a_session_without_a_trade_at_the_tail_of_an_intraday_answer_costs_one_extra_request(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(WED),
        faults={"AAPL": {"illiquid_sessions": [WED.isoformat()]}},
    )
    run = daily_run(market, WED, lookback=2, timeframe="5min")

    assert run.problems == "" and run.requests == 2, "asked once more, then accepted"
    assert stored_intraday(market_db, "AAPL", "5min") == market.served_intraday("AAPL", TUE, 300)
    assert no_data(market_db, "AAPL", "5min") == {WED: False}, "recorded as before: at the end, unsettled"
