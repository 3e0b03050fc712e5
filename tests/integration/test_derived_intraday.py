"""5-minute and hourly bars built from the 1-minute answer, and the sampled cross-check against IB's own.

Through the real client over the socket to the simulator and real PostgreSQL; stored bars are
compared with what the simulator serves. See docs/intraday.md#derived-bars.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from campaign import observe
from campaign.invariants import lost
from ibkr_market_data import calendars, repository
from ibkr_market_data.daily_plan import intraday_target
from ibkr_market_data.derived import DeriveSettings
from ibkr_market_data.repository import RunContext
from ibkr_market_data.tasks import assets, derivation
from ibkr_market_data.timeframes import FIVE_MINUTES
from tests.integration.daily_runs import DAG_ID, daily_run, start_market, stored_intraday

WED, THU = dt.date(2025, 6, 25), dt.date(2025, 6, 26)


def after_close(day: dt.date) -> dt.datetime:
    return calendars.session_close("NASDAQ", day) + dt.timedelta(hours=1)


@pytest.fixture
def derived_intraday(monkeypatch):
    """Use the shipped intraday policy (AAPL and BHP are priority 1), no cross-check unless set."""
    monkeypatch.setenv("IBKR_INTRADAY_MAX_PRIORITY", "1")
    monkeypatch.delenv("IBKR_INTRADAY_TIMEFRAMES", raising=False)
    monkeypatch.delenv("IBKR_DERIVE_INTRADAY", raising=False)
    monkeypatch.setenv("IBKR_DERIVE_CROSS_CHECK_PERCENT", "0")


def asked(market, since: int = 0) -> list[tuple[str, str]]:
    """Return the (symbol, bar size) of the historical requests after the first ``since``."""
    return sorted((r.symbol, r.bar_size) for r in market.simulator.request_log.historical()[since:])


def expected_built(market, symbol: str, session: dt.date, bar_seconds: int) -> list[tuple]:
    """Return IB's ``bar_seconds`` bars, their WAP and trade count those of the minutes they span.

    Times, prices and volume are the simulator's own bigger bars: independent of the derivation.
    """
    bars = market.served_intraday(symbol, session, bar_seconds)
    minutes = market.served_intraday(symbol, session, 60)
    rebuilt = []
    for at, bar in enumerate(bars):
        end = bars[at + 1][0] if at + 1 < len(bars) else dt.datetime.max
        parts = [minute for minute in minutes if bar[0] <= minute[0] < end]
        volume = sum(part[5] for part in parts)
        wap = (sum(part[6] * part[5] for part in parts) / volume).quantize(Decimal("1e-8"), ROUND_HALF_UP)
        rebuilt.append((*bar[:6], wap, sum(part[7] for part in parts)))
    return rebuilt


def prices(rows: list[tuple]) -> list[tuple]:
    """Return each bar's time, open, high, low, close and volume."""
    return [row[:6] for row in rows]


def findings(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT s.symbol, q.timeframe, q.timestamp::date, q.check_name, q.severity, q.detail
            FROM data_quality_issues q JOIN symbols s ON s.id = q.symbol_id
            WHERE q.check_name = 'derived_vs_ib' ORDER BY 1, 2
            """
        ).fetchall()


def revisions(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT COUNT(*) FROM bar_revisions").fetchone()[0]


def test_one_request_per_symbol_day_builds_the_5_minute_and_hourly_bars_ib_serves(
    derived_intraday, tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(tws_simulator_factory, monkeypatch, market_db, after_close(WED))

    run = daily_run(market, WED, symbols=("AAPL", "BHP"), lookback=1, timeframe="")

    assert run.problems == ""
    assert asked(market) == [("AAPL", "1 day"), ("AAPL", "1 min"), ("BHP", "1 day"), ("BHP", "1 min")]
    for symbol in ("AAPL", "BHP"):
        for timeframe, bar_seconds in (("5min", 300), ("1hour", 3600)):
            stored = stored_intraday(market_db, symbol, timeframe)
            assert prices(stored) == prices(market.served_intraday(symbol, WED, bar_seconds))
            assert stored == expected_built(market, symbol, WED, bar_seconds)
    hours = stored_intraday(market_db, "AAPL", "1hour")
    assert [row[0].strftime("%H:%M") for row in hours] == [
        f"{h}:{m}"
        for h, m in (
            ("13", "30"),
            ("14", "00"),
            ("15", "00"),
            ("16", "00"),
            ("17", "00"),
            ("18", "00"),
            ("19", "00"),
        )
    ], "09:30, 10:00, ... New York: cut on the hour from local midnight"

    # The benches' and campaign's verification covers the built bars and finds them as IB serves them.
    with psycopg.connect(market_db) as conn:
        keys = observe.plan_keys(conn, [(DAG_ID, run.run_id)])
        snapshot = observe.db_snapshot(conn, market.simulator.model, keys)
    assert {("AAPL", "5min", WED), ("AAPL", "1hour", WED), ("BHP", "5min", WED)} <= keys
    served = observe.served_bars(market.simulator.served, keys, market.clock())
    assert lost(served.expected, snapshot) == []
    assert sum(len(bars) for bars in served.expected.bars.values()) == 2 + 390 + 78 + 7 + 360 + 72 + 6

    # The built timeframes complete their assets, as the asked ones did: consumers still get events.
    with psycopg.connect(market_db) as conn:
        completions = assets.run_completions(
            conn, RunContext(DAG_ID, run.run_id), assets.daily_sessions("2025-06-25")
        )
    complete = {(item.exchange, item.timeframe) for item in completions if item.complete}
    assert {("ASX", "5min"), ("ASX", "1hour")} <= complete, "BHP, the only ASX symbol, built both"
    for exchange in ("ASX", "NASDAQ"):  # NASDAQ's MSFT was not in the run: no event in any timeframe
        assert {(exchange, tf) in complete for tf in ("1min", "5min", "1hour")} == {
            (exchange, "1min") in complete
        }

    # A rerun asks nothing and changes nothing.
    before = {tf: stored_intraday(market_db, "AAPL", tf) for tf in ("5min", "1hour")}
    again = daily_run(market, WED, symbols=("AAPL", "BHP"), lookback=1, timeframe="")
    assert again.requests == 0
    assert {tf: stored_intraday(market_db, "AAPL", tf) for tf in ("5min", "1hour")} == before
    assert revisions(market_db) == 0
    assert market.simulator.violations() == []


def test_a_derived_session_lost_is_built_again_from_the_stored_minutes_without_asking_ib(
    derived_intraday, tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(tws_simulator_factory, monkeypatch, market_db, after_close(WED))
    daily_run(market, WED, symbols=("AAPL",), lookback=1, timeframe="")
    built = stored_intraday(market_db, "AAPL", "5min")
    with psycopg.connect(market_db) as conn:
        conn.execute("DELETE FROM market_data WHERE timeframe = '5min'")

    again = daily_run(market, WED, symbols=("AAPL",), lookback=1, timeframe="")

    assert again.requests == 0
    assert stored_intraday(market_db, "AAPL", "5min") == built


def test_the_cross_check_asks_ib_for_its_share_and_records_where_ib_disagrees(
    derived_intraday, tws_simulator_factory, monkeypatch, market_db
):
    monkeypatch.setenv("IBKR_DERIVE_CROSS_CHECK_PERCENT", "100")
    market = start_market(tws_simulator_factory, monkeypatch, market_db, after_close(WED))

    agreeing = daily_run(market, WED, symbols=("AAPL",), lookback=1, timeframe="")

    assert asked(market) == [("AAPL", "1 day"), ("AAPL", "1 hour"), ("AAPL", "1 min"), ("AAPL", "5 mins")]
    assert agreeing.problems == ""
    # IB's own bars are stored as IB sends them, and agree with the minutes in prices and volume.
    assert stored_intraday(market_db, "AAPL", "5min") == market.served_intraday("AAPL", WED, 300)
    assert findings(market_db) == []

    market.at(after_close(THU))
    market.simulator.faults.set("AAPL", coarse_bars_disagree=True)
    since = len(market.simulator.request_log.historical())
    disagreeing = daily_run(market, THU, symbols=("AAPL",), lookback=1, timeframe="")

    assert asked(market, since) == [
        ("AAPL", "1 day"),
        ("AAPL", "1 hour"),
        ("AAPL", "1 min"),
        ("AAPL", "5 mins"),
    ]
    assert disagreeing.problems == "", "a warning by default"
    recorded = findings(market_db)
    assert [row[:5] for row in recorded] == [
        ("AAPL", "1hour", THU, "derived_vs_ib", "warning"),
        ("AAPL", "5min", THU, "derived_vs_ib", "warning"),
    ]
    assert all("volume differs in" in row[5] for row in recorded)
    assert "volume differs in 78 bars" in recorded[1][5]


def test_the_cross_check_samples_a_steady_share_of_symbol_sessions(
    derived_intraday, tws_simulator_factory, monkeypatch, market_db
):
    """At the default 5 %, a few symbol-sessions are asked; which ones is the same on every run."""
    monkeypatch.delenv("IBKR_DERIVE_CROSS_CHECK_PERCENT")
    symbols = ("AAPL", "MSFT", "BHP", "SPY")
    market = start_market(tws_simulator_factory, monkeypatch, market_db, after_close(WED))

    daily_run(market, WED, symbols=symbols, lookback=30, timeframe="")

    coarse = [r for r in market.simulator.request_log.historical() if r.bar_size in ("5 mins", "1 hour")]
    minute = [r for r in market.simulator.request_log.historical() if r.bar_size == "1 min"]
    assert len(minute) == 4 * 30
    # 120 symbol-sessions at 5 %: the hash of symbol and session picks these 4, on every run.
    sampled = {(r.symbol, r.end_date_time[:8]) for r in coarse}
    settings = DeriveSettings()
    sessions = calendars.sessions_between("NASDAQ", dt.date(2025, 5, 1), WED)[-30:]
    assert sampled == {
        (symbol, f"{day:%Y%m%d}")
        for symbol in ("AAPL", "MSFT", "SPY")
        for day in sessions
        if settings.asks_ib(symbol, day)
    } | {
        ("BHP", f"{day:%Y%m%d}")
        for day in calendars.sessions_between("ASX", dt.date(2025, 5, 1), WED)[-30:]
        if settings.asks_ib("BHP", day)
    }
    assert len(sampled) == 4
    assert len(coarse) == 2 * len(sampled), "one 5-minute and one hourly request per sampled session"
    assert all(r.duration == "1 D" for r in coarse), "each sampled session asked alone"


def test_a_halted_session_builds_short_and_is_not_asked_again_once_its_minutes_settle(
    derived_intraday, tws_simulator_factory, monkeypatch, market_db
):
    halt = {"date": WED.isoformat(), "from": "11:00", "to": "13:30"}
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, after_close(WED), faults={"AAPL": {"halts": halt}}
    )

    first = daily_run(market, WED, lookback=1, timeframe="")
    assert asked(market) == [("AAPL", "1 day"), ("AAPL", "1 min")]
    assert first.problems == ""
    assert stored_intraday(market_db, "AAPL", "5min") == expected_built(market, "AAPL", WED, 300)
    assert len(stored_intraday(market_db, "AAPL", "5min")) == 78 - 30
    assert daily_run(market, WED, lookback=1, timeframe="").requests == 1, "the minutes asked again"
    assert daily_run(market, WED, lookback=1, timeframe="").requests == 0, "settled: nothing asked"

    market.at(after_close(THU))
    since = len(market.simulator.request_log.historical())
    thursday = daily_run(market, THU, lookback=2, timeframe="")
    assert asked(market, since) == [("AAPL", "1 day"), ("AAPL", "1 min")], "WED's derived bars not asked"
    assert thursday.problems == ""
    assert stored_intraday(market_db, "AAPL", "1hour")[-7:] == expected_built(market, "AAPL", THU, 3600)


def test_a_cross_check_session_without_ib_s_bars_is_left_unchecked_not_a_finding(
    derived_intraday, tws_simulator_factory, monkeypatch, market_db
):
    """A sampled request that failed stored nothing of IB's: no bar is 'lacking at IB' for that."""
    market = start_market(tws_simulator_factory, monkeypatch, market_db, after_close(WED))
    daily_run(market, WED, symbols=("AAPL",), lookback=1, timeframe="")
    with psycopg.connect(market_db) as conn:
        conn.execute("DELETE FROM market_data WHERE timeframe = '5min'")
        [row] = [row for row in repository.select_symbols(conn, symbols=["AAPL"]) if row.symbol == "AAPL"]
        target = replace(intraday_target(row, FIVE_MINUTES, [WED]), cross_check=True)

        problems = derivation.cross_check(conn, RunContext(DAG_ID, "manual__unchecked"), [target])

    assert problems == []
    assert findings(market_db) == []
