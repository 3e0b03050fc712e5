"""A fresh install loads no symbols before IB answers: the first daily run that reaches IB loads them.

The daily DAG through dag.test() on an empty symbols table, against real PostgreSQL and the TWS
simulator, and with nothing listening where the gateway should be. See docs/production.md.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from ibkr_market_data import universe as universe_module
from tests.fixtures.airflow_stack import free_port

DAY = dt.date(2025, 1, 15)
#: The shipped ETF list: a universe file small enough for one test run.
ETF_FILE = ("etfs.csv",)


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("symbols", "collection_logs", "market_data")
        }


@pytest.fixture
def etf_universe(monkeypatch: pytest.MonkeyPatch) -> list:
    """Make the ETF file the universe files the run loads, as a deployment's own list would be."""
    etfs = universe_module.load_universe(ETF_FILE)
    monkeypatch.setattr(universe_module, "load_universe", lambda files=ETF_FILE: list(etfs))
    return etfs


@pytest.fixture
def one_quick_retry(daily_dag):
    """Retry the plan task once, a second later: the run's own retries, without their minutes of backoff."""
    plan = daily_dag.get_task("plan")
    saved = plan.retries, plan.retry_delay, plan.retry_exponential_backoff
    plan.retries, plan.retry_delay, plan.retry_exponential_backoff = 1, dt.timedelta(seconds=1), False
    yield
    plan.retries, plan.retry_delay, plan.retry_exponential_backoff = saved


def test_without_ib_the_run_fails_clearly_and_the_next_run_loads_the_universe_and_collects(
    daily_dag, market_db, ibkr_connection, etf_universe, one_quick_retry, monkeypatch, capsys
):
    assert counts(market_db) == {"symbols": 0, "collection_logs": 0, "market_data": 0}
    gateway = f"ibkr://127.0.0.1:{free_port()}?client_id=10&client_id_range=32&connect_timeout=2"
    with monkeypatch.context() as down:
        down.setenv("AIRFLOW_CONN_IBKR_DEFAULT", gateway)
        failed = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})

    assert failed.state == "failed"
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in failed.get_task_instances()}
    assert tries["plan"] == ("failed", 2), "IB unreachable is a passing failure: the task retried"
    logs = capsys.readouterr().out
    assert "IB not reachable: symbols not loaded yet" in logs
    assert "Trading date 2025-01-15: no symbols loaded yet: nothing was planned or collected" in logs
    assert counts(market_db) == {"symbols": 0, "collection_logs": 0, "market_data": 0}
    assert ibkr_connection.request_log.historical() == []

    # The gateway is logged in now: the next run loads the universe through IB and collects it.
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})

    assert dag_run.state == "success"
    with psycopg.connect(market_db) as conn:
        active = {
            row[0] for row in conn.execute("SELECT symbol FROM symbols WHERE active AND con_id IS NOT NULL")
        }
        stored = {
            row[0]
            for row in conn.execute(
                "SELECT s.symbol FROM market_data md JOIN symbols s ON s.id = md.symbol_id "
                "WHERE md.timeframe = '1day' AND md.timestamp = %s",
                (dt.datetime.combine(DAY, dt.time()),),
            )
        }
    assert active == {entry.symbol for entry in etf_universe}
    assert stored == active
    assert len(ibkr_connection.request_log.contract_details()) == len(etf_universe)

    # Loaded once: the run after asks IB about no symbol again.
    again = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})
    assert again.state == "success"
    assert len(ibkr_connection.request_log.contract_details()) == len(etf_universe)


def test_a_dry_run_on_an_empty_table_loads_nothing_and_says_so(
    daily_dag, market_db, ibkr_connection, etf_universe
):
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "dry_run": True})
    assert dag_run.state == "success"
    assert counts(market_db) == {"symbols": 0, "collection_logs": 0, "market_data": 0}
    assert ibkr_connection.request_log.contract_details() == []
