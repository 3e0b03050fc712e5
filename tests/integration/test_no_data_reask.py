"""A 162 "no data" answer is asked again once in the same run: a passing one heals, a real one is accepted.

Through the real client over the socket to the simulator and the real PostgreSQL; what a run stored is
compared with what the simulator serves. See docs/ib-behaviours.md#a-162-asked-again.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from ibkr_market_data import calendars
from tests.integration.daily_runs import attempts, daily_run, no_data, start_market, stored_daily

TUE = dt.date(2025, 6, 24)


def after_close(day: dt.date) -> dt.datetime:
    """Return an hour after the US close of ``day``: the moment its daily run looks at IB."""
    return calendars.session_close("NASDAQ", day) + dt.timedelta(hours=1)


def requests_sent(url: str, run_id: str) -> dict[str, int]:
    """Return the requests each symbol's attempts of the run recorded, summed over its tries."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT s.symbol, SUM(cl.requests_sent) FROM collection_logs cl
            JOIN symbols s ON s.id = cl.symbol_id WHERE cl.run_id = %s GROUP BY s.symbol
            """,
            (run_id,),
        ).fetchall()
    return {symbol: int(sent) for symbol, sent in rows}


def test_a_one_off_162_for_the_runs_date_is_asked_again_and_the_run_stores_its_bars(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(TUE), faults={"AAPL": {"no_data": 1}}
    )
    run = daily_run(market, TUE, symbols=("AAPL", "MSFT"), lookback=1)

    assert market.simulator.faults.fired().get("no_data") == 1, "the 162 was sent"
    assert run.problems == ""
    assert run.requests == 3, "one request per symbol and one more for AAPL"
    assert market.historical_requests("AAPL") == 2
    assert attempts(market_db, run.run_id) == [
        ("AAPL", "1day", "completed", 1),
        ("MSFT", "1day", "completed", 1),
    ]
    assert requests_sent(market_db, run.run_id) == {"AAPL": 2, "MSFT": 1}
    for symbol in ("AAPL", "MSFT"):
        assert stored_daily(market_db, symbol) == market.served_daily(symbol, TUE, TUE)
        assert no_data(market_db, symbol) == {}


def test_a_session_without_a_trade_is_asked_again_once_then_recorded_unsettled(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(TUE),
        faults={"AAPL": {"illiquid_sessions": [TUE.isoformat()]}},
    )
    assert not market.simulator.served.traded("AAPL", TUE)

    run = daily_run(market, TUE, symbols=("AAPL",), lookback=1)
    assert run.problems == "", "no data is not a failure"
    assert run.requests == 2, "asked once more, then accepted"
    assert attempts(market_db, run.run_id) == [("AAPL", "1day", "no_data", 1)]
    assert stored_daily(market_db, "AAPL") == {}
    assert no_data(market_db, "AAPL") == {TUE: False}, "two 162s of one run, the same day, settle nothing"

    again = daily_run(market, TUE, symbols=("AAPL",), lookback=1)
    assert again.requests == 2, "each run asks once more, no more"
    assert no_data(market_db, "AAPL") == {TUE: False}


def test_a_retried_try_of_the_run_does_not_ask_again(tws_simulator_factory, monkeypatch, market_db):
    """The re-ask is one per target and run: a second try of the group accepts its 162 at once."""
    monkeypatch.setenv("IBKR_MAX_MAPPED_TASKS", "1")  # AAPL and MSFT in one group, retried together
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        after_close(TUE),
        faults={"AAPL": {"illiquid_sessions": [TUE.isoformat()]}, "MSFT": {"pacing_violation": 1}},
    )
    run = daily_run(market, TUE, symbols=("AAPL", "MSFT"), lookback=1)

    assert run.problems == ""
    assert sorted(attempts(market_db, run.run_id), key=lambda row: (row[3], row[0])) == [
        ("AAPL", "1day", "no_data", 1),
        ("MSFT", "1day", "failed", 1),
        ("AAPL", "1day", "no_data", 2),
        ("MSFT", "1day", "completed", 2),
    ]
    assert market.historical_requests("AAPL") == 3, "two in the first try, one in the second"
    assert stored_daily(market_db, "MSFT") == market.served_daily("MSFT", TUE, TUE)
    assert no_data(market_db, "AAPL") == {TUE: False}


def test_with_the_reask_off_a_162_is_accepted_at_once(tws_simulator_factory, monkeypatch, market_db):
    monkeypatch.setenv("IBKR_NO_DATA_REASK_SECONDS", "off")
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(TUE), faults={"AAPL": {"no_data": 1}}
    )
    run = daily_run(market, TUE, symbols=("AAPL",), lookback=1)

    assert run.requests == 1
    assert attempts(market_db, run.run_id) == [("AAPL", "1day", "no_data", 1)]
    assert no_data(market_db, "AAPL") == {TUE: False}
    assert stored_daily(market_db, "AAPL") == {}


def test_the_daily_dag_run_heals_a_one_off_162_and_ends_green_with_every_bar(
    daily_dag, small_universe, market_db, ibkr_connection
):
    day = dt.date(2025, 1, 15)
    ibkr_connection.faults.set("MSFT", no_data=1)
    dag_run = daily_dag.test(
        run_conf={"date": day.isoformat(), "symbols": ["MSFT", "AAPL"], "lookback_sessions": 2}
    )

    assert dag_run.state == "success"
    assert ibkr_connection.faults.fired().get("no_data") == 1
    assert len(ibkr_connection.request_log.historical(symbol="MSFT")) == 2
    assert len(ibkr_connection.request_log.historical(symbol="AAPL")) == 1
    with psycopg.connect(market_db) as conn:
        stored = conn.execute(
            "SELECT s.symbol, md.timestamp::date FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
            " ORDER BY 1, 2"
        ).fetchall()
        assert conn.execute("SELECT COUNT(*) FROM no_data_sessions").fetchone()[0] == 0
    sessions = [dt.date(2025, 1, 14), day]
    assert stored == [(symbol, session) for symbol in ("AAPL", "MSFT") for session in sessions]
