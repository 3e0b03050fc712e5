"""Data-quality checks in real runs.

Defects the simulator injects are found, recorded, and resolved when IB answers right again; clean
data raises nothing.
"""

import datetime as dt

import psycopg
import pytest

from tests.integration.test_daily_dag import latest_statuses

DAY = dt.date(2025, 1, 15)
NEXT_DAY = dt.date(2025, 1, 16)


def store_history(url, simulator, symbols, until: dt.date, sessions: int = 25) -> None:
    """Clean bars of each symbol's last ``sessions`` sessions up to ``until``: the checks' reference."""
    from ibkr_market_data import calendars, repository
    from ibkr_market_data_dev.simulated_ib import stored_bar

    with psycopg.connect(url) as conn:
        for row in repository.select_symbols(conn, symbols=list(symbols)):
            days = calendars.sessions_between(row.primary_exchange, until - dt.timedelta(days=60), until)
            bars = [stored_bar(simulator.model.daily_bar(row.symbol, day)) for day in days[-sessions:]]
            repository.upsert_bars(conn, row.id, "1day", bars)
        conn.commit()


def issues(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT s.symbol, q.timestamp::date, q.check_name, q.severity, q.run_id, q.last_run_id,
                   q.resolved_at IS NOT NULL
            FROM data_quality_issues q JOIN symbols s ON s.id = q.symbol_id
            ORDER BY s.symbol, q.timestamp, q.check_name
            """
        ).fetchall()


def test_a_spike_fails_the_run_that_finds_it_and_is_resolved_when_ib_corrects_it(
    daily_dag, small_universe, market_db, ibkr_connection, capsys
):
    from ibkr_market_data import cli

    store_history(market_db, ibkr_connection, ["AAPL", "MSFT"], DAY - dt.timedelta(days=7))
    ibkr_connection.faults.set("AAPL", spike=1)
    ibkr_connection.faults.set("MSFT", volume_units=1)

    first = daily_dag.test(run_conf={"date": DAY.isoformat(), "symbols": ["AAPL", "MSFT"]})

    assert first.state == "failed", "a new error-severity finding fails the run"
    assert {symbol: status[0] for symbol, status in latest_statuses(market_db, first.run_id).items()} == {
        "AAPL": "completed",
        "MSFT": "completed",
    }
    assert issues(market_db) == [
        ("AAPL", DAY, "spike", "error", first.run_id, first.run_id, False),
        ("MSFT", DAY, "volume_units", "warning", first.run_id, first.run_id, False),
    ]
    with psycopg.connect(market_db) as conn:
        [[stored_close]] = conn.execute(
            "SELECT close FROM market_data md JOIN symbols s ON s.id = md.symbol_id "
            "WHERE s.symbol = 'AAPL' AND md.timestamp = %s",
            (dt.datetime.combine(DAY, dt.time()),),
        ).fetchall()
    assert stored_close == 3 * ibkr_connection.model.daily_bar("AAPL", DAY).close, "flagged, not dropped"
    cli.print_run_summary(daily_dag.dag_id, first.run_id)
    printed = [line for line in capsys.readouterr().out.splitlines() if "data quality" in line]
    assert [line.split(":")[0:2] for line in printed] == [
        ["  data quality (error)", " AAPL 2025-01-15 spike"],
        ["  data quality (warning)", " MSFT 2025-01-15 volume_units"],
    ]

    # The next day's run fetches the date again (its lookback): IB's bars are right now, the
    # revisions replace the wrong ones and the findings are resolved.
    second = daily_dag.test(run_conf={"date": NEXT_DAY.isoformat(), "symbols": ["AAPL", "MSFT"]})

    assert second.state == "success"
    assert issues(market_db) == [
        ("AAPL", DAY, "spike", "error", first.run_id, first.run_id, True),
        ("MSFT", DAY, "volume_units", "warning", first.run_id, first.run_id, True),
    ]
    assert ibkr_connection.violations() == []


def test_stale_prices_warn_without_failing_the_run(daily_dag, small_universe, market_db, ibkr_connection):
    store_history(market_db, ibkr_connection, ["SPY"], DAY - dt.timedelta(days=7))
    ibkr_connection.faults.set("SPY", stale_price=1)

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "symbols": ["SPY"]})

    assert dag_run.state == "success"
    # The answer's five sessions: the oldest as it was, the next four frozen on its close with no
    # volume; the third unchanged session in a row is where the stretch is reported.
    assert [row[:4] for row in issues(market_db)] == [("SPY", dt.date(2025, 1, 14), "stale_price", "warning")]


@pytest.mark.parametrize("severities", ["spike=warning", "spike=ignore"])
def test_severity_is_configuration(
    daily_dag, small_universe, market_db, ibkr_connection, monkeypatch, severities
):
    monkeypatch.setenv("IBKR_QUALITY_SEVERITIES", severities)
    store_history(market_db, ibkr_connection, ["AAPL"], DAY - dt.timedelta(days=7))
    ibkr_connection.faults.set("AAPL", spike=1)

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "symbols": ["AAPL"]})

    assert dag_run.state == "success"
    expected = [] if severities == "spike=ignore" else [("AAPL", DAY, "spike", "warning")]
    assert [row[:4] for row in issues(market_db)] == expected


def test_clean_runs_find_nothing_and_a_failed_symbol_leaves_missing_sessions(
    daily_dag,
    small_universe,
    market_db,
    ibkr_connection,
):
    from tests.integration.conftest import SMALL_UNIVERSE

    store_history(market_db, ibkr_connection, SMALL_UNIVERSE, DAY - dt.timedelta(days=7))
    ibkr_connection.faults.set("MSFT", no_permission=True)

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})

    assert dag_run.state == "failed"  # MSFT failed: the run says so, as before
    assert [row[:4] for row in issues(market_db)] == [("MSFT", DAY, "missing_session", "warning")]


def test_recording_the_same_findings_again_is_idempotent(small_universe, market_db):
    from ibkr_market_data import repository
    from ibkr_market_data.quality import Check, Finding, Severity
    from ibkr_market_data.repository import RunContext

    with psycopg.connect(market_db) as conn:
        [aapl] = repository.select_symbols(conn, symbols=["AAPL"])
        finding = Finding(aapl.id, "AAPL", DAY, Check.SPIKE, Severity.ERROR, "close 3x")
        checked = {aapl.id: [DAY - dt.timedelta(days=1), DAY]}
        first = repository.record_quality_findings(
            conn, RunContext("d", "run1", 1), [finding], checked, "1day"
        )
        again = repository.record_quality_findings(
            conn, RunContext("d", "run2", 1), [finding], checked, "1day"
        )
        gone = repository.record_quality_findings(conn, RunContext("d", "run3", 1), [], checked, "1day")
        back = repository.record_quality_findings(
            conn, RunContext("d", "run4", 1), [finding], checked, "1day"
        )
        elsewhere = repository.record_quality_findings(
            conn, RunContext("d", "run5", 1), [], {aapl.id: [DAY + dt.timedelta(days=1)]}, "1day"
        )
        conn.commit()
    assert (first.new, first.known, first.resolved) == ([finding], [], 0)
    assert (again.new, again.known, again.resolved) == ([], [finding], 0)
    assert (gone.new, gone.known, gone.resolved) == ([], [], 1)
    assert (back.new, back.known, back.resolved) == ([finding], [], 0), (
        "a finding that comes back is new again"
    )
    assert elsewhere.resolved == 0, "only the sessions checked are resolved"
    assert issues(market_db) == [("AAPL", DAY, "spike", "error", "run1", "run4", False)]


def test_a_bad_severity_setting_fails_the_run_before_any_request(
    daily_dag, small_universe, market_db, ibkr_connection, monkeypatch
):
    monkeypatch.setenv("IBKR_QUALITY_SEVERITIES", "spike=loud")

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "symbols": ["AAPL"]})

    assert dag_run.state == "failed"
    assert ibkr_connection.request_log.historical() == []
    assert latest_statuses(market_db, dag_run.run_id) == {}
