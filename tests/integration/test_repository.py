"""Writes, dedupe and the original system's monitoring queries against a real PostgreSQL."""

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from ibkr_market_data import repository
from ibkr_market_data.bars import Bar
from ibkr_market_data.client_ids import PostgresClientIdLease
from ibkr_market_data.errors import PlanNotFoundError
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.repository import RunContext
from ibkr_market_data.symbols import load_symbols
from ibkr_market_data.universe import load_universe

RUN = RunContext(dag_id="daily_market_data", run_id="manual__test", try_number=1)

# The original system's monitoring queries, verbatim from the original cron system's README.
RECENT_COLLECTIONS = """
SELECT 
    s.symbol,
    s.exchange,
    cl.status,
    cl.started_at,
    cl.completed_at,
    cl.error_message
FROM collection_logs cl
JOIN symbols s ON cl.symbol_id = s.id
WHERE cl.started_at >= CURRENT_DATE
ORDER BY cl.started_at DESC;
"""
COVERAGE = """
SELECT 
    s.symbol,
    s.exchange,
    COUNT(md.id) as data_points,
    MAX(md.timestamp) as latest_data
FROM symbols s
LEFT JOIN market_data md ON s.id = md.symbol_id 
    AND md.timeframe = '1day'
WHERE s.active = true
GROUP BY s.id, s.symbol, s.exchange
ORDER BY latest_data DESC NULLS LAST;
"""
STATISTICS = """
SELECT 
    DATE(cl.started_at) as collection_date,
    COUNT(*) as total_attempts,
    SUM(CASE WHEN cl.status = 'completed' THEN 1 ELSE 0 END) as successful,
    SUM(CASE WHEN cl.status = 'failed' THEN 1 ELSE 0 END) as failed,
    AVG(EXTRACT(EPOCH FROM (cl.completed_at - cl.started_at))) as avg_duration_seconds
FROM collection_logs cl
WHERE cl.collection_type = 'historical'
    AND cl.started_at >= CURRENT_DATE - INTERVAL '30 days'
GROUP BY DATE(cl.started_at)
ORDER BY collection_date DESC;
"""


def bar(day, close="100.5", volume=1000, **prices):
    values = {"open": Decimal("100"), "high": Decimal("101"), "low": Decimal("99"), "close": Decimal(close)}
    values.update({k: Decimal(v) for k, v in prices.items()})
    return Bar(
        timestamp=dt.datetime.combine(day, dt.time()),
        volume=volume,
        wap=Decimal("100.2"),
        bar_count=7,
        **values,
    )


@pytest.fixture
def symbol_ids(db_conn):
    universe = [s for s in load_universe() if s.symbol in ("AAPL", "BRK A", "GGP")]
    repository.upsert_universe(db_conn, universe)
    db_conn.execute("UPDATE symbols SET active = TRUE, con_id = id")
    db_conn.commit()
    return {row.symbol: row.id for row in repository.select_symbols(db_conn)}


def test_upsert_is_idempotent_and_counts_revisions(db_conn, symbol_ids):
    aapl = symbol_ids["AAPL"]
    days = [dt.date(2025, 1, d) for d in (14, 15, 16)]
    first = repository.upsert_bars(db_conn, aapl, "1day", [bar(d) for d in days])
    assert (first.inserted, first.revised) == (3, 0)
    again = repository.upsert_bars(db_conn, aapl, "1day", [bar(d) for d in days])
    assert (again.inserted, again.revised) == (0, 0)
    revised = repository.upsert_bars(db_conn, aapl, "1day", [bar(days[1], close="100.75")])
    assert (revised.inserted, revised.revised) == (0, 1)
    db_conn.commit()
    rows = db_conn.execute("SELECT timestamp, close FROM market_data ORDER BY timestamp").fetchall()
    assert [close for _, close in rows] == [Decimal("100.5"), Decimal("100.75"), Decimal("100.5")]


@pytest.mark.parametrize("extra_days", [0, repository.ARRAY_UPSERT_MAX_BARS], ids=["arrays", "copy"])
def test_upsert_with_a_run_records_old_and_new_values_and_forgets_no_data(db_conn, symbol_ids, extra_days):
    aapl = symbol_ids["AAPL"]
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(2 + extra_days)]
    repository.upsert_bars(db_conn, aapl, "1day", [bar(d) for d in days[:-1]], RUN)
    repository.record_no_data_sessions(db_conn, aapl, "1day", [days[-1]], "no data from IB", RUN)
    db_conn.commit()

    result = repository.upsert_bars(
        db_conn, aapl, "1day", [bar(days[0], close="100.75"), *(bar(d) for d in days[1:])], RUN
    )
    db_conn.commit()

    assert (result.inserted, result.revised) == (1, 1)
    revisions = db_conn.execute(
        "SELECT timestamp::date, old_close, new_close, dag_id, run_id FROM bar_revisions"
    ).fetchall()
    assert revisions == [(days[0], Decimal("100.5"), Decimal("100.75"), RUN.dag_id, RUN.run_id)]
    assert db_conn.execute("SELECT COUNT(*) FROM no_data_sessions").fetchone()[0] == 0
    # The same bars again: nothing written, no revision.
    again = repository.upsert_bars(
        db_conn, aapl, "1day", [bar(days[0], close="100.75"), *(bar(d) for d in days[1:])], RUN
    )
    db_conn.commit()
    assert (again.inserted, again.revised) == (0, 0)
    assert db_conn.execute("SELECT COUNT(*) FROM bar_revisions").fetchone()[0] == 1


def test_large_batches_go_through_copy_with_the_same_semantics(db_conn, symbol_ids):
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(repository.ARRAY_UPSERT_MAX_BARS + 36)]
    first = repository.upsert_bars(db_conn, symbol_ids["AAPL"], "1day", [bar(d) for d in days])
    assert (first.inserted, first.revised) == (len(days), 0)
    changed = [bar(d, close="100.25") if i % 10 == 0 else bar(d) for i, d in enumerate(days)]
    second = repository.upsert_bars(db_conn, symbol_ids["AAPL"], "1day", changed)
    assert (second.inserted, second.revised) == (0, 10)
    db_conn.commit()
    assert db_conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == len(days)


def test_extreme_values_are_stored_exactly(db_conn, symbol_ids):
    day = dt.date(2025, 1, 15)
    repository.upsert_bars(
        db_conn,
        symbol_ids["BRK A"],
        "1day",
        [bar(day, open="712345.67", high="725000.25", low="700000.01", close="719999.99", volume=1_500)],
    )
    repository.upsert_bars(
        db_conn,
        symbol_ids["GGP"],
        "1day",
        [bar(day, open="0.0041", high="0.0049", low="0.0038", close="0.0045", volume=3_456_789_012)],
    )
    db_conn.commit()
    stored = {
        row[0]: row[1:]
        for row in db_conn.execute(
            "SELECT s.symbol, md.low, md.close, md.volume "
            "FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
        ).fetchall()
    }
    assert stored["BRK A"] == (Decimal("700000.01000000"), Decimal("719999.99000000"), 1_500)
    assert stored["GGP"] == (Decimal("0.00380000"), Decimal("0.00450000"), 3_456_789_012)


def test_database_rejects_a_broken_bar(db_conn, symbol_ids):
    with pytest.raises(psycopg.errors.CheckViolation):
        repository.upsert_bars(db_conn, symbol_ids["AAPL"], "1day", [bar(dt.date(2025, 1, 15), high="98")])
    db_conn.rollback()


def test_original_monitoring_queries_run_unchanged_and_answer_correctly(db_conn, symbol_ids):
    day = dt.datetime(2025, 1, 15)
    done = repository.start_attempt(db_conn, RUN, symbol_ids["AAPL"], "1day", day, day)
    repository.upsert_bars(db_conn, symbol_ids["AAPL"], "1day", [bar(day.date())])
    repository.finish_attempt(db_conn, done, "completed", records_collected=1)
    failed = repository.start_attempt(db_conn, RUN, symbol_ids["GGP"], "1day", day, day)
    repository.finish_attempt(
        db_conn, failed, "failed", error_message="IB error 354: not subscribed", error_code=354
    )
    repository.log_skipped(
        db_conn, RUN, [(symbol_ids["BRK A"], "not a trading day on NYSE")], "1day", day, day
    )
    db_conn.commit()

    recent = {row[0]: row for row in db_conn.execute(RECENT_COLLECTIONS).fetchall()}
    assert recent["AAPL"][2] == "completed" and recent["GGP"][5] == "IB error 354: not subscribed"
    assert recent["BRK A"][2] == "skipped"

    coverage = {row[0]: row for row in db_conn.execute(COVERAGE).fetchall()}
    assert coverage["AAPL"][2:] == (1, day)
    assert coverage["GGP"][2:] == (0, None)

    (stats,) = db_conn.execute(STATISTICS).fetchall()
    assert stats[1:4] == (3, 1, 1)
    assert stats[4] >= 0


def test_a_retried_attempt_is_a_new_row_and_a_repeated_one_is_not(db_conn, symbol_ids):
    day = dt.datetime(2025, 1, 15)
    first = repository.start_attempt(db_conn, RUN, symbol_ids["AAPL"], "1day", day, day)
    again = repository.start_attempt(db_conn, RUN, symbol_ids["AAPL"], "1day", day, day)
    retry = repository.start_attempt(
        db_conn, RunContext(RUN.dag_id, RUN.run_id, try_number=2), symbol_ids["AAPL"], "1day", day, day
    )
    assert first == again != retry
    assert db_conn.execute("SELECT COUNT(*) FROM collection_logs").fetchone()[0] == 2


def test_a_plan_is_read_back_per_group_and_whole_and_a_new_plan_replaces_it(db_conn):
    other_run = RunContext(dag_id="daily_market_data", run_id="manual__other")
    repository.save_plan(db_conn, other_run, [("X", [{"symbol": "X"}])])
    groups = repository.save_plan(
        db_conn, RUN, [("A…B (2)", [{"symbol": "A"}, {"symbol": "B"}]), ("C", [{"symbol": "C", "n": 1}])]
    )
    db_conn.commit()
    assert [(group.index, group.label, group.size) for group in groups] == [(0, "A…B (2)", 2), (1, "C", 1)]
    assert repository.planned_group(db_conn, RUN, 1) == [{"symbol": "C", "n": 1}]
    assert [item["symbol"] for item in repository.planned_items(db_conn, RUN)] == ["A", "B", "C"]

    # The plan task ran again: its new plan replaces the old one whole, other runs keep theirs.
    repository.save_plan(db_conn, RUN, [("D", [{"symbol": "D"}])])
    assert [item["symbol"] for item in repository.planned_items(db_conn, RUN)] == ["D"]
    with pytest.raises(PlanNotFoundError, match="manual__test .* no planned group 1"):
        repository.planned_group(db_conn, RUN, 1)
    assert repository.planned_items(db_conn, other_run) == [{"symbol": "X"}]


def test_plans_older_than_the_retention_are_dropped_by_the_next_plan(db_conn):
    old_run = RunContext(dag_id="daily_market_data", run_id="scheduled__old")
    repository.save_plan(db_conn, old_run, [("X", [{"symbol": "X"}])])
    db_conn.execute(
        "UPDATE planned_groups SET planned_at = NOW() - %s - INTERVAL '1 hour'", (repository.PLAN_RETENTION,)
    )
    repository.save_plan(db_conn, RUN, [("A", [{"symbol": "A"}])])
    assert repository.planned_items(db_conn, old_run) == []
    assert repository.planned_items(db_conn, RUN) == [{"symbol": "A"}]


def test_a_lease_on_the_write_connection_releases_after_a_failed_statement(market_db, db_conn):
    lease = PostgresClientIdLease(db_conn, 10, 2)
    held = lease.acquire()
    with pytest.raises(psycopg.errors.DivisionByZero):
        db_conn.execute("SELECT 1 / 0")
    lease.release_all()
    assert lease.held == []
    with psycopg.connect(market_db) as other_worker:
        assert repository.try_lease_client_id(other_worker, held), "released, so another session may lease it"


def test_unresolvable_symbols_stay_inactive_and_are_reported(market_db, ibkr_connection):
    ibkr_connection.faults.set("MSFT", unknown_contract=True)
    universe = [s for s in load_universe() if s.symbol in ("AAPL", "MSFT", "BHP")]
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook, universe)
        again = load_symbols(conn, hook, universe)
        rows = {r.symbol: r for r in repository.select_symbols(conn, active_only=False)}
        reason = conn.execute("SELECT inactive_reason FROM symbols WHERE symbol = 'MSFT'").fetchone()[0]
    assert sorted(report.resolved) == ["AAPL", "BHP"]
    assert set(report.unresolved) == {"MSFT"} and "200" in report.unresolved["MSFT"]
    assert again.resolved == [] and set(again.unresolved) == {"MSFT"}, "resolved symbols are not asked again"
    assert len(rows) == 3
    assert rows["AAPL"].active and rows["AAPL"].con_id == ibkr_connection.model.contract("AAPL").con_id
    assert not rows["MSFT"].active and "No security definition" in reason


def test_reloading_when_ib_named_another_primary_exchange_keeps_one_row_per_con_id(
    small_universe, market_db, ibkr_connection
):
    """An earlier load stored IB's primary exchange (not the CSV's): a reload must not add a twin."""
    from ibkr_market_data.symbols import load_symbols

    with psycopg.connect(market_db) as conn:
        [bhp] = repository.select_symbols(conn, symbols=["BHP"])
        repository.mark_resolved(conn, bhp.id, bhp.con_id, "NYSE")  # as if IB had named another venue
        conn.commit()
        with IbkrHook() as hook:
            report = load_symbols(conn, hook, [s for s in load_universe() if s.symbol == "BHP"])
        rows = conn.execute(
            "SELECT id, con_id, primary_exchange FROM symbols WHERE symbol = 'BHP'"
        ).fetchall()
    assert rows == [(bhp.id, bhp.con_id, "NYSE")]
    assert report.resolved == ["BHP"] and not report.unresolved


def test_a_symbol_ib_places_on_an_exchange_without_a_calendar_stays_inactive_with_the_reason(
    market_db, ibkr_connection
):
    import dataclasses

    from ibkr_market_data.symbols import load_symbols

    [bhp] = [s for s in load_universe() if s.symbol == "BHP"]

    class NamesChixau:
        """IB's answer for BHP with its primary exchange as CHIXAU: the simulator lists BHP on ASX only."""

        def __init__(self, hook):
            self.hook = hook

        def resolve_contract(self, spec):
            return dataclasses.replace(self.hook.resolve_contract(spec), primary_exchange="CHIXAU")

    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, NamesChixau(hook), [bhp])
        [(active, reason)] = conn.execute("SELECT active, inactive_reason FROM symbols").fetchall()
    assert active is False
    assert reason.startswith("IB names primary exchange 'CHIXAU': No trading calendar for exchange 'CHIXAU'")
    assert list(report.unresolved) == ["BHP"]


def test_loading_goes_on_after_the_gateway_drops_the_connection_once(market_db, ibkr_connection, monkeypatch):
    from ibkr_market_data import symbols

    monkeypatch.setattr(symbols, "RESOLVE_BACKOFF_SECONDS", (0.0,))
    ibkr_connection.faults.set("MSFT", drop_connection=1)
    universe = [s for s in load_universe() if s.symbol in ("AAPL", "MSFT", "SPY")]
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = symbols.load_symbols(conn, hook, universe)
        rows = conn.execute("SELECT symbol, active FROM symbols ORDER BY symbol").fetchall()
    assert sorted(report.resolved) == ["AAPL", "MSFT", "SPY"] and not report.unresolved
    assert rows == [("AAPL", True), ("MSFT", True), ("SPY", True)]
    assert ibkr_connection.request_log.outcomes("contract_details", symbol="MSFT")[0] == "dropped"
