"""Every DAG imports, names only pools from pools.json, and follows the project's conventions."""

import json

import pytest

from ibkr_market_data_dev.local_env import REPO_ROOT

POOLS = json.loads((REPO_ROOT / "pools.json").read_text())


@pytest.fixture(scope="module")
def dag_bag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_dags_import_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert "daily_market_data" in dag_bag.dag_ids


def test_every_pool_named_by_a_task_is_in_pools_json(dag_bag):
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            assert task.pool in POOLS or task.pool == "default_pool", (
                f"{dag.dag_id}.{task.task_id}: {task.pool}"
            )


def test_ib_requests_run_in_the_ibkr_pool_below_ibs_limits(dag_bag):
    collect = dag_bag.get_dag("daily_market_data").get_task("collect")
    assert collect.pool == "ibkr"
    assert POOLS["ibkr"]["slots"] < 32, "stay below IB's 32 API clients and 50 open requests"


def test_conventions(dag_bag):
    for dag in dag_bag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md, dag.dag_id
        assert dag.default_args.get("owner"), dag.dag_id
        assert dag.default_args.get("retries", 0) >= 1, dag.dag_id


def test_daily_dag_schedule_and_params(dag_bag):
    from ibkr_market_data.timetables import ExchangeSessionTimetable

    dag = dag_bag.get_dag("daily_market_data")
    assert isinstance(dag.timetable, ExchangeSessionTimetable)
    assert dag.catchup is False
    assert dag.params.get_param("date").schema["format"] == "date"
    assert set(dag.params.keys()) >= {"date", "dry_run", "priority", "exchanges", "symbols"}


def test_timetable_plugin_and_ibkr_connection_type_are_registered():
    from airflow import plugins_manager
    from airflow.providers_manager import ProvidersManager

    assert "ibkr_market_data.timetables.ExchangeSessionTimetable" in plugins_manager.get_timetables_plugins()
    hook = ProvidersManager().hooks["ibkr"]
    assert hook.hook_class_name == "ibkr_market_data.hooks.ibkr.IbkrHook"
    widgets = ProvidersManager().connection_form_widgets
    assert any(name.endswith("client_id_range") for name in widgets)
