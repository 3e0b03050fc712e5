"""IB's bad days for sessions, through the real client over the socket: what the daily run leaves stored.

Sessions without a trade, halts, late corrections and a split, each compared with what the simulator
serves (``served``) on a clock the test moves from day to day. See docs/ib-behaviours.md.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from ibkr_market_data import calendars
from ibkr_market_data.daily_plan import lookback_sessions
from tests.integration.daily_runs import (
    attempts,
    daily_run,
    no_data,
    start_market,
    stored_daily,
    stored_intraday,
)

MON, TUE, WED, THU, FRI = (dt.date(2025, 6, day) for day in (23, 24, 25, 26, 27))


def after_close(day: dt.date) -> dt.datetime:
    """Return an hour after the US close of ``day``: the moment its daily run looks at IB."""
    return calendars.session_close("NASDAQ", day) + dt.timedelta(hours=1)


def window(day: dt.date, lookback: int) -> list[dt.date]:
    return lookback_sessions("NASDAQ", day, lookback, after_close(day))


def short_sessions(url: str, symbol: str = "AAPL") -> dict[dt.date, tuple[int, int, int, bool, bool]]:
    """Return the symbol's short 1-minute sessions: bars, scheduled, answers, adds up, settled."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT k.session, k.bars, k.scheduled, k.answers, k.agrees_with_daily, k.settled_at IS NOT NULL
            FROM short_sessions k JOIN symbols s ON s.id = k.symbol_id
            WHERE s.symbol = %s AND k.timeframe = '1min'
            """,
            (symbol,),
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def revisions(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT timestamp::date, old_high, new_high, old_volume, new_volume, new_close / old_close
            FROM bar_revisions ORDER BY timestamp, id
            """
        ).fetchall()


def test_a_session_without_a_trade_is_asked_again_until_ib_leaves_it_out_again_past_it(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(TUE),
        faults={
            "AAPL": {"illiquid_sessions": [TUE.isoformat()]},
            "MSFT": {"illiquid_sessions": [MON.isoformat()]},
        },
    )
    assert not market.simulator.served.traded("AAPL", TUE)

    alone = daily_run(market, TUE, lookback=1)
    assert attempts(market_db, alone.run_id) == [("AAPL", "1day", "no_data", 1)], "162 for the one session"
    assert no_data(market_db, "AAPL") == {TUE: False}, "two empty answers of one run settle nothing"
    assert daily_run(market, TUE, lookback=1).requests == 2, "so the next run asks again (and once more)"
    assert no_data(market_db, "AAPL") == {TUE: False}, "nor two the same day, neither past it"

    market.at(after_close(WED))
    daily_run(market, WED, symbols=("AAPL", "MSFT"), lookback=5)
    assert no_data(market_db, "AAPL") == {TUE: True}, "left out again by an answer holding WED: confirmed"
    assert no_data(market_db, "MSFT") == {MON: False}, "first left out, even inside the answer: not yet"
    for symbol in ("AAPL", "MSFT"):
        sessions = window(WED, 5)
        assert stored_daily(market_db, symbol) == market.served_daily(symbol, sessions[0], WED)

    again = daily_run(market, WED, symbols=("AAPL", "MSFT"), lookback=5)
    assert again.requests == 1, "AAPL settled; MSFT asked again"
    assert no_data(market_db, "MSFT") == {MON: True}
    assert daily_run(market, WED, symbols=("AAPL", "MSFT"), lookback=5).requests == 0, "nothing missing"


def test_a_halted_session_is_complete_once_a_second_answer_adds_up_to_the_daily_bar(
    tws_simulator_factory, monkeypatch, market_db
):
    monkeypatch.setenv("IBKR_INTRADAY_MAX_PRIORITY", "1")  # AAPL is priority 1
    monkeypatch.setenv("IBKR_INTRADAY_TIMEFRAMES", "1min")
    halt = {"date": WED.isoformat(), "from": "11:00", "to": "13:30"}
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": {"halts": halt}}
    )

    first = daily_run(market, WED, lookback=1, timeframe="")
    assert first.requests == 2  # the daily bar and the minutes
    minutes = market.served_intraday("AAPL", WED)
    assert len(minutes) == 390 - 150
    assert stored_intraday(market_db, "AAPL") == minutes
    assert short_sessions(market_db) == {WED: (240, 390, 1, True, False)}, "one answer settles nothing"
    assert first.problems == "", "a halt is a warning, never a failure"
    with psycopg.connect(market_db) as conn:
        [(detail,)] = conn.execute(
            "SELECT detail FROM data_quality_issues WHERE check_name = 'short_session'"
        ).fetchall()
    assert "240 of 390 scheduled 1-minute bars" in detail and "not settled" in detail

    second = daily_run(market, WED, lookback=1, timeframe="")
    assert second.requests == 1, "the minutes are asked again; the daily bar is stored"
    assert short_sessions(market_db) == {WED: (240, 390, 2, True, True)}
    assert daily_run(market, WED, lookback=1, timeframe="").requests == 0, "settled complete"

    market.at(after_close(THU))
    before = market.simulator.request_log.historical()
    thursday = daily_run(market, THU, lookback=2, timeframe="")
    asked = market.simulator.request_log.historical()[len(before) :]
    assert thursday.requests == 2
    assert {(request.bar_size, request.end_date_time[:8]) for request in asked} == {
        ("1 day", "20250626"),
        ("1 min", "20250626"),
    }, "the settled halt is not asked for again"
    with psycopg.connect(market_db) as conn:
        [(detail,)] = conn.execute(
            "SELECT detail FROM data_quality_issues WHERE check_name = 'short_session'"
        ).fetchall()
    assert "settled complete" in detail
    assert market.simulator.violations() == []


def test_a_truncated_answer_never_settles_a_short_session_however_often_it_comes(
    tws_simulator_factory, monkeypatch, market_db
):
    halt = {"date": WED.isoformat(), "from": "11:00", "to": "13:30"}
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": {"halts": halt}}
    )
    daily_run(market, WED, lookback=1)  # the daily bar
    # The newest minute after the answer's end, four times: each run asks again once, in vain.
    market.simulator.faults.set("AAPL", split_answer=4)
    assert daily_run(market, WED, lookback=1, timeframe="1min").requests == 2
    assert short_sessions(market_db) == {WED: (239, 390, 1, False, False)}, "two answers, one run: one"
    assert daily_run(market, WED, lookback=1, timeframe="1min").requests == 2
    assert short_sessions(market_db) == {WED: (239, 390, 2, False, False)}, "the same short answer twice"

    assert daily_run(market, WED, lookback=1, timeframe="1min").requests == 1, "the close is there"
    assert short_sessions(market_db) == {WED: (240, 390, 1, True, False)}, "a different count starts over"
    daily_run(market, WED, lookback=1, timeframe="1min")
    assert short_sessions(market_db) == {WED: (240, 390, 2, True, True)}
    assert stored_intraday(market_db, "AAPL") == market.served_intraday("AAPL", WED)


def test_late_corrections_arrive_through_the_lookback_as_revisions(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(TUE),
        faults={"AAPL": {"late_correction_days": 2}},
    )
    view = market.simulator.served.view(
        market.simulator.served.contract("AAPL", market.clock()), market.clock()
    )
    assert not view.is_final(TUE)
    daily_run(market, TUE, lookback=3)
    preliminary = market.served_daily("AAPL", TUE, TUE)[TUE]
    assert stored_daily(market_db, "AAPL")[TUE] == preliminary

    runs = {}
    for day in (WED, THU, FRI):
        market.at(after_close(day))
        runs[day] = daily_run(market, day, lookback=3)

    # A bar turns final two days after its close: MON before WED's run, TUE before THU's, WED before
    # FRI's. Each is revised once, by the first run whose lookback fetched it final.
    final = market.served_daily("AAPL", window(TUE, 3)[0], FRI)
    assert stored_daily(market_db, "AAPL") == final
    assert final[TUE] != preliminary
    revised = revisions(market_db)
    assert [row[0] for row in revised] == [MON, TUE, WED]
    assert revised[1][1:5] == (preliminary[1], final[TUE][1], preliminary[4], final[TUE][4])
    with psycopg.connect(market_db) as conn:
        by_run = dict(conn.execute("SELECT timestamp::date, run_id FROM bar_revisions").fetchall())
    assert by_run == {MON: runs[WED].run_id, TUE: runs[THU].run_id, WED: runs[FRI].run_id}


def test_a_split_inside_the_lookback_revises_every_earlier_bar_by_one_ratio_and_records_no_no_data(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(TUE),
        faults={"AAPL": {"split": {"date": WED.isoformat(), "ratio": 4}}},
    )
    daily_run(market, TUE, lookback=5)
    market.at(after_close(WED))
    daily_run(market, WED, lookback=5)

    sessions = window(WED, 5)
    stored = stored_daily(market_db, "AAPL")
    assert {day: stored[day] for day in sessions} == market.served_daily("AAPL", sessions[0], WED)
    ratios = {row[0]: row[5] for row in revisions(market_db)}
    assert set(ratios) == set(sessions) - {WED}
    assert all(ratio == pytest.approx(0.25, rel=1e-6) for ratio in ratios.values())
    assert no_data(market_db, "AAPL") == {}
    # Older history is re-based by the corporate-actions handling, not by the lookback.
    assert set(stored) - set(sessions) == set(window(TUE, 5)) - set(sessions)


def test_minutes_without_a_trade_settle_a_session_the_way_a_halt_does(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(WED),
        faults={"AAPL": {"illiquid_minutes": 0.25}},
    )
    daily_run(market, WED, lookback=1)
    minutes = market.served_intraday("AAPL", WED)
    assert 200 < len(minutes) < 390

    daily_run(market, WED, lookback=1, timeframe="1min")
    daily_run(market, WED, lookback=1, timeframe="1min")
    assert short_sessions(market_db) == {WED: (len(minutes), 390, 2, True, True)}
    assert stored_intraday(market_db, "AAPL") == minutes
    assert daily_run(market, WED, lookback=1, timeframe="1min").requests == 0
