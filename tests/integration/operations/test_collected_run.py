"""A daily run through dag.test() against the simulator records each request's latency and run metrics."""

from __future__ import annotations

import datetime as dt

import psycopg

from ibkr_market_data import coverage, repository
from tests.integration.conftest import SMALL_UNIVERSE
from tests.integration.operations.conftest import clear_operations_tables

DAY = dt.date(2025, 1, 15)


def test_a_run_records_request_latency_and_metrics(daily_dag, small_universe, market_db, ibkr_connection):
    with psycopg.connect(market_db) as conn:
        clear_operations_tables(conn)
    ibkr_connection.faults.set(None, latency_ms=60)
    # One session per symbol (no lookback), so each request brings one bar.
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})
    assert dag_run.state == "success"
    with psycopg.connect(market_db) as conn:
        latencies = [
            row[0]
            for row in conn.execute(
                "SELECT request_seconds FROM collection_logs WHERE run_id = %s AND status = 'completed'",
                (dag_run.run_id,),
            )
        ]
        metrics = {
            row["exchange"]: row
            for row in repository.run_metrics(conn, dag_id="daily_market_data", run_id=dag_run.run_id)
        }
        rows = coverage.coverage(conn, DAY, DAY)
    assert len(latencies) == len(SMALL_UNIVERSE)
    assert all(seconds is not None and seconds >= 0.06 for seconds in latencies)
    whole = metrics["ALL"]
    assert (whole["requests"], whole["bars"], whole["completed"], whole["failed"]) == (8, 8, 8, 0)
    assert whole["latency_p50"] >= 0.06 and whole["latency_p95"] >= whole["latency_p50"]
    assert whole["wall_seconds"] > 0
    assert set(metrics) == {"ALL", "ASX", "NASDAQ", "NYSE", "ARCA"}
    assert sum(metrics[exchange]["bars"] for exchange in ("ASX", "NASDAQ", "NYSE", "ARCA")) == 8
    assert all(row.complete for row in rows) and sum(row.stored for row in rows) == 8


def test_a_failed_run_alerts_naming_the_symbol_and_reason(
    daily_dag, small_universe, market_db, ibkr_connection, http_sink
):
    ibkr_connection.faults.set("MSFT", no_permission=True)
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "symbols": ["MSFT", "AAPL"]})
    assert dag_run.state == "failed"
    # dag.test() runs the DAG's on_failure_callback in-process, as the DAG processor would.
    assert len(http_sink.posts) == 1
    text = http_sink.posts[0][1]["text"]
    assert f"daily_market_data run {dag_run.run_id} failed: 1 symbols failed" in text
    # The request covered MSFT's lookback window: its last five sessions up to the date.
    assert "- MSFT 2025-01-08..2025-01-15:" in text and "(IB 354, try 1)" in text
    assert "AAPL" not in text.split("\n", 1)[1]


def test_a_failed_backfill_alerts_naming_the_symbol_and_its_gap(
    airflow_db, small_universe, market_db, ibkr_connection, http_sink
):
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "backfill_market_data.py")).get_dag(
        "backfill_market_data"
    )
    ibkr_connection.faults.set("AAPL", no_permission=True)
    dag_run = dag.test(
        run_conf={"start_date": "2025-01-13", "end_date": "2025-01-17", "symbols": ["AAPL", "BHP"]}
    )
    assert dag_run.state == "failed"
    assert len(http_sink.posts) == 1
    text = http_sink.posts[0][1]["text"]
    assert f"backfill_market_data run {dag_run.run_id} failed: 1 symbols failed" in text
    assert "- AAPL 2025-01-13..2025-01-17:" in text and "(IB 354, try 1)" in text
