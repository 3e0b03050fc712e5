"""The daily DAG under the real scheduler (LocalExecutor), triggered through Airflow's REST API."""

import datetime as dt

import psycopg
import pytest

from tests.fixtures.airflow_stack import STACK_UNIVERSE

pytestmark = pytest.mark.scheduler

DAG_ID = "daily_market_data"


def test_triggered_run_with_date_param_collects_through_the_pool(
    airflow_stack, stack_market_db, stack_simulator
):
    airflow_stack.wait_for_dag(DAG_ID)
    day = dt.date(2025, 1, 15)
    run_id = airflow_stack.trigger(DAG_ID, {"date": day.isoformat()})
    airflow_stack.unpause(DAG_ID)
    run = airflow_stack.wait_for_run(DAG_ID, run_id, timeout=600)
    assert run["state"] == "success"

    collect_tis = [ti for ti in airflow_stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "collect"]
    assert sorted(ti["rendered_map_index"] for ti in collect_tis) == sorted(STACK_UNIVERSE)
    assert {ti["pool"] for ti in collect_tis} == {"ibkr"}
    assert {ti["state"] for ti in collect_tis} == {"success"}

    with psycopg.connect(stack_market_db) as conn:
        rows = conn.execute(
            """
            SELECT s.symbol, md.close, md.volume FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE md.timestamp = %s AND md.timeframe = '1day'
            """,
            (dt.datetime(2025, 1, 15),),
        ).fetchall()
        statuses = conn.execute(
            "SELECT DISTINCT status FROM collection_logs WHERE run_id = %s", (run_id,)
        ).fetchall()
    expected = {s: stack_simulator.model.daily_bar(s, day) for s in STACK_UNIVERSE}
    assert {symbol: (close, volume) for symbol, close, volume in rows} == {
        s: (bar.close, bar.volume) for s, bar in expected.items()
    }
    assert statuses == [("completed",)]
    assert stack_simulator.violations() == []


def test_unpaused_dag_schedules_the_latest_completed_trading_date(airflow_stack, stack_market_db):
    from ibkr_market_data.settings import CLOSE_DELAY_MINUTES, DAILY_EXCHANGES
    from ibkr_market_data.timetables import ExchangeSessionTimetable

    airflow_stack.wait_for_dag(DAG_ID)
    airflow_stack.unpause(DAG_ID)
    latest = ExchangeSessionTimetable(DAILY_EXCHANGES, CLOSE_DELAY_MINUTES).latest_completed(
        dt.datetime.now(dt.UTC)
    )
    scheduled = airflow_stack.wait_for_scheduled_run(DAG_ID)
    assert scheduled["logical_date"].startswith(latest.isoformat())
    run = airflow_stack.wait_for_run(DAG_ID, scheduled["dag_run_id"], timeout=600)
    assert run["state"] == "success"
    with psycopg.connect(stack_market_db) as conn:
        collected = conn.execute(
            "SELECT COUNT(*) FROM market_data WHERE timestamp = %s", (dt.datetime.combine(latest, dt.time()),)
        ).fetchone()[0]
    assert collected > 0


def test_pools_import_twice_updates_the_existing_pool(airflow_stack, tmp_path):
    """A second `make run` on the same machine finds the pool there already and updates it."""
    import json

    from ibkr_market_data_dev.local_env import REPO_ROOT

    pools = json.loads((REPO_ROOT / "pools.json").read_text())
    resized = tmp_path / "pools.json"
    resized.write_text(json.dumps({"ibkr": {**pools["ibkr"], "slots": pools["ibkr"]["slots"] - 1}}))
    try:
        assert airflow_stack.import_pools(resized) == ["ibkr"]
        assert airflow_stack._request("GET", "/api/v2/pools/ibkr")["slots"] == pools["ibkr"]["slots"] - 1
    finally:
        airflow_stack.import_pools(REPO_ROOT / "pools.json")
    assert airflow_stack._request("GET", "/api/v2/pools/ibkr")["slots"] == pools["ibkr"]["slots"]
