"""The freshness watchdog DAG run with dag.test(): its logical date is the 'now' it checks against."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import pytest

from ibkr_market_data import repository
from tests.fixtures.airflow_stack import free_port
from tests.integration.operations.conftest import D14, running_http_sink


@pytest.fixture
def watchdog_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    dag_bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "market_data_freshness.py"))
    assert not dag_bag.import_errors
    return dag_bag.get_dag("market_data_freshness")


def test_watchdog_run_alerts_once_per_gap(watchdog_dag, week, http_sink, db_conn, monkeypatch):
    monkeypatch.setenv("IBKR_FRESHNESS_DELAY_MINUTES", "180")
    as_of = dt.datetime(
        2025, 1, 15, 4, 0, tzinfo=dt.UTC
    )  # the US 14th is due (21:00 + 3 h), ASX's 15th is not
    first = watchdog_dag.test(logical_date=as_of, run_conf={"lookback_days": 3})
    assert first.state == "success"
    assert len(http_sink.posts) == 1
    assert http_sink.posts[0][1]["text"].splitlines()[1:] == [
        "- LATE NASDAQ 2025-01-14: 1 of 2 symbols missing 3 h after the close (1 stored, 1 failed, 0 no data)"
    ]
    again = watchdog_dag.test(logical_date=as_of + dt.timedelta(minutes=15), run_conf={"lookback_days": 3})
    assert again.state == "success" and len(http_sink.posts) == 1
    assert [(gap.exchange, gap.trading_date) for gap in repository.open_freshness_alerts(db_conn)] == [
        ("NASDAQ", D14)
    ]


def test_a_healthy_watchdog_run_pings_the_heartbeat(watchdog_dag, week, http_sink, monkeypatch):
    with running_http_sink() as heartbeat:
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_HEARTBEAT", heartbeat.url)
        run = watchdog_dag.test(logical_date=dt.datetime(2025, 1, 15, 4, 0, tzinfo=dt.UTC))
        assert run.state == "success"
        assert heartbeat.gets == [urlsplit(heartbeat.url).path]


def test_the_watchdog_alerts_its_own_failure_without_its_database(
    watchdog_dag, market_db, http_sink, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    # The DAG processor's context when the run has no last task instance: no dag_run.
    context = {
        "dag": watchdog_dag,
        "run_id": "scheduled__2025-01-15T04:00:00+00:00",
        "reason": "task_failure",
    }
    callbacks = watchdog_dag.on_failure_callback
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        callback(context)
    [(_, payload)] = http_sink.posts
    assert payload["text"].startswith(
        "*market_data_freshness run scheduled__2025-01-15T04:00:00+00:00 failed*\n"
    )
    assert "Airflow says: task_failure" in payload["text"]
