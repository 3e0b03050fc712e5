"""Intraday bars through the daily DAG (dag.test) against real PostgreSQL and the TWS simulator."""

import datetime as dt
from dataclasses import astuple

import psycopg
import pytest

from ibkr_market_data import calendars, daily_plan
from ibkr_market_data.timeframes import FIVE_MINUTES
from ibkr_market_data_dev.simulated_ib import stored_bar
from tests.integration.conftest import SMALL_UNIVERSE

HIGH_PRIORITY = {"BHP", "CBA", "AAPL", "MSFT", "SPY"}  # priority 1 in the shipped universe
DAY = dt.date(2025, 1, 15)
BLACK_FRIDAY = dt.date(2024, 11, 29)  # New York closes at 13:00 (the simulator's clock is mid-2025)


@pytest.fixture
def intraday_by_default(monkeypatch):
    """Use the shipped timeframe policy: intraday bars for the priority-1 symbols."""
    monkeypatch.delenv("IBKR_INTRADAY_MAX_PRIORITY", raising=False)
    monkeypatch.delenv("IBKR_INTRADAY_TIMEFRAMES", raising=False)


def bar_counts(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT s.symbol, md.timeframe, COUNT(*) FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            GROUP BY 1, 2
            """
        ).fetchall()
    return {(symbol, timeframe): count for symbol, timeframe, count in rows}


def stored_intraday(url, symbol, timeframe):
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE s.symbol = %s AND md.timeframe = %s ORDER BY md.timestamp
            """,
            (symbol, timeframe),
        ).fetchall()


def simulated(simulator, symbol, day, bar_seconds):
    return [astuple(stored_bar(bar)) for bar in simulator.model.intraday_bars(symbol, day, bar_seconds, True)]


def test_configured_run_collects_intraday_bars_of_high_priority_symbols(
    intraday_by_default, daily_dag, small_universe, market_db, ibkr_connection
):
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})
    assert dag_run.state == "success"

    us_bars = {"1day": 1, "1hour": 7, "5min": 78, "1min": 390}
    asx_bars = {"1day": 1, "1hour": 6, "5min": 72, "1min": 360}  # 10:00-16:00 Sydney
    expected = {}
    for symbol in SMALL_UNIVERSE:
        per_timeframe = asx_bars if symbol in {"BHP", "CBA", "GGP"} else us_bars
        for timeframe, count in per_timeframe.items():
            if timeframe == "1day" or symbol in HIGH_PRIORITY:
                expected[(symbol, timeframe)] = count
    assert bar_counts(market_db) == expected

    # Each bar is the simulator's, stamped with its start in UTC.
    aapl = stored_intraday(market_db, "AAPL", "1min")
    assert aapl == simulated(ibkr_connection, "AAPL", DAY, 60)
    assert aapl[0][0] == dt.datetime(2025, 1, 15, 14, 30)  # 09:30 New York
    # 5-minute and hourly bars are built from the minutes: the simulator's own in time, prices and
    # volume (its bigger bars' WAP and trade count are not its minutes': docs/intraday.md#derived-bars).
    bhp = stored_intraday(market_db, "BHP", "5min")
    assert [row[:6] for row in bhp] == [row[:6] for row in simulated(ibkr_connection, "BHP", DAY, 300)]
    assert bhp[0][0] == dt.datetime(2025, 1, 14, 23, 0)  # 10:00 Sydney, the UTC day before
    assert [r[0].minute for r in stored_intraday(market_db, "SPY", "1hour")] == [30, 0, 0, 0, 0, 0, 0]

    # One request per symbol and timeframe collected from IB, within the rules; a rerun sends nothing.
    # None of these symbol-sessions falls in the default 5 % cross-check: one intraday request each.
    requests = ibkr_connection.request_log.historical()
    assert sorted(r.bar_size for r in requests) == sorted(
        ["1 day"] * len(SMALL_UNIVERSE) + ["1 min"] * len(HIGH_PRIORITY)
    )
    assert {r.duration for r in requests if r.bar_size == "1 min"} == {"1 D"}
    assert ibkr_connection.violations() == []
    rerun = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})
    assert rerun.state == "success"
    assert len(ibkr_connection.request_log.historical()) == len(requests)
    assert bar_counts(market_db) == expected
    # The simulator's minutes agree with its days: the intraday-vs-daily check finds nothing.
    assert quality_issues(market_db) == []


def quality_issues(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT s.symbol, q.timestamp::date, q.check_name, q.severity, q.detail
            FROM data_quality_issues q JOIN symbols s ON s.id = q.symbol_id ORDER BY 1, 2, 3
            """
        ).fetchall()


def test_minutes_that_disagree_with_their_day_are_a_quality_finding(
    intraday_by_default, daily_dag, small_universe, market_db, ibkr_connection
):
    ibkr_connection.faults.set("AAPL", intraday_mismatch=True)
    conf = {"date": DAY.isoformat(), "lookback_sessions": 1, "symbols": ["AAPL", "MSFT"]}

    dag_run = daily_dag.test(run_conf=conf)

    assert dag_run.state == "success"  # a warning by default
    [(symbol, session, check, severity, detail)] = quality_issues(market_db)
    assert (symbol, session, check, severity) == ("AAPL", DAY, "intraday_vs_daily", "warning")
    assert "1-minute high" in detail


def test_an_early_close_is_complete_with_its_shorter_session_and_a_gap_is_healed(
    daily_dag, small_universe, market_db, ibkr_connection
):
    conf = {
        "date": BLACK_FRIDAY.isoformat(),
        "lookback_sessions": 1,
        "timeframe": "1min",
        "symbols": ["AAPL"],
    }
    assert daily_dag.test(run_conf=conf).state == "success"
    bars = stored_intraday(market_db, "AAPL", "1min")
    assert len(bars) == 210
    assert bars[-1][0] == dt.datetime(2024, 11, 29, 17, 59)  # the 12:59 bar ends the 13:00 close

    # The run of the date again sends nothing: 210 bars is the whole session.
    requests = len(ibkr_connection.request_log.historical())
    assert daily_dag.test(run_conf=conf).state == "success"
    assert len(ibkr_connection.request_log.historical()) == requests

    # Bars lost from the middle of the session: the next run asks for that session again.
    with psycopg.connect(market_db) as conn:
        conn.execute(
            "DELETE FROM market_data WHERE timeframe = '1min' AND timestamp BETWEEN %s AND %s",
            (dt.datetime(2024, 11, 29, 15, 0), dt.datetime(2024, 11, 29, 15, 9)),
        )
    assert len(stored_intraday(market_db, "AAPL", "1min")) == 200
    assert daily_dag.test(run_conf=conf).state == "success"
    assert len(ibkr_connection.request_log.historical()) == requests + 1
    assert stored_intraday(market_db, "AAPL", "1min") == bars


def test_a_backfill_of_intraday_bars_splits_by_the_longest_window_ib_accepts(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    conf = {
        "start_date": "2025-01-06",
        "end_date": "2025-01-24",
        "symbols": ["AAPL", "BHP"],
        "timeframe": "5min",
    }
    assert backfill_dag.test(run_conf=conf).state == "success"

    # 5-minute bars: at most 7 calendar days (IB's "1 W") per request, so three weeks take three each.
    requests = ibkr_connection.request_log.historical(bar_size="5 mins")
    assert sorted(r.symbol for r in requests) == ["AAPL"] * 3 + ["BHP"] * 3
    assert all(int(r.duration.split()[0]) <= 7 for r in requests)
    expected = {
        (symbol, "5min"): sum(
            daily_plan.scheduled_bars(exchange, day, FIVE_MINUTES)
            for day in calendars.sessions_between(exchange, dt.date(2025, 1, 6), dt.date(2025, 1, 24))
        )
        for symbol, exchange in (("AAPL", "NASDAQ"), ("BHP", "ASX"))
    }
    assert bar_counts(market_db) == expected
    assert expected[("BHP", "5min")] == 15 * 72  # no ASX holiday in those three weeks
    assert ibkr_connection.violations() == []

    # Nothing is missing any more: a rerun sends nothing.
    assert backfill_dag.test(run_conf=conf).state == "success"
    assert len(ibkr_connection.request_log.historical(bar_size="5 mins")) == len(requests)
