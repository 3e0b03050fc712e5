"""Every DAG imports, names only pools from pools.json, and follows the project's conventions."""

import json

import pytest

from ibkr_market_data.settings import MARKET_DATA_DAG_IDS
from ibkr_market_data_dev.local_env import REPO_ROOT

POOLS = json.loads((REPO_ROOT / "pools.json").read_text())
DAG_IDS = {"daily_market_data", "backfill_market_data", "market_data_freshness", "market_data_adjustments"}
#: The tasks that talk to IB: each holds one of the ibkr pool's slots, and only they do.
IB_TASKS = {
    ("daily_market_data", "collect"),
    ("daily_market_data", "corporate_actions"),
    ("backfill_market_data", "collect_gap"),
    ("market_data_adjustments", "refresh_adjustments"),
}


@pytest.fixture(scope="module")
def dag_bag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_dags_import_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert set(dag_bag.dag_ids) == DAG_IDS
    assert set(MARKET_DATA_DAG_IDS) <= DAG_IDS  # the DAGs the dashboard's permission check names


def every_task(dag_bag):
    return [(dag.dag_id, task) for dag in dag_bag.dags.values() for task in dag.tasks]


def test_every_pool_named_by_a_task_is_in_pools_json(dag_bag):
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            assert task.pool in POOLS or task.pool == "default_pool", (
                f"{dag.dag_id}.{task.task_id}: {task.pool}"
            )


def test_ib_requests_run_in_the_ibkr_pool_below_ibs_limits(dag_bag):
    in_ibkr_pool = {(dag_id, task.task_id) for dag_id, task in every_task(dag_bag) if task.pool == "ibkr"}
    assert in_ibkr_pool == IB_TASKS
    assert POOLS["ibkr"]["slots"] < 32, "stay below IB's 32 API clients and 50 open requests"


def test_conventions(dag_bag):
    for dag in dag_bag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md, dag.dag_id


def test_every_task_has_an_owner_retries_and_a_timeout(dag_bag):
    for dag_id, task in every_task(dag_bag):
        name = f"{dag_id}.{task.task_id}"
        assert task.owner == "market-data", name
        assert task.retries >= 1, f"{name}: a transient database or IB error must be retried"
        assert task.execution_timeout is not None, name
        assert task.execution_timeout.total_seconds() > 0, name


def test_every_task_fails_at_once_on_a_permanent_failure_and_retries_the_rest(dag_bag):
    from airflow.sdk import RetryAction

    from ibkr_market_data.attempt import SymbolOutcome
    from ibkr_market_data.errors import (
        CollectionError,
        GroupingConfigError,
        IbkrConfigError,
        InvalidQualitySettingError,
        InvalidRunParamError,
        PermanentError,
    )

    transient = CollectionError(SymbolOutcome("AAPL", "failed", reason="pacing"), retryable=True)
    for dag_id, task in every_task(dag_bag):
        name = f"{dag_id}.{task.task_id}"
        policy = task.retry_policy
        assert policy is not None, name
        for permanent in (
            InvalidRunParamError("Param 'date' ..."),
            PermanentError("354 no permission"),
            GroupingConfigError("IBKR_MAX_MAPPED_TASKS is 'many'"),
            IbkrConfigError("extra client_id_range must be 1..32"),
            InvalidQualitySettingError("IBKR_QUALITY_SEVERITIES: bad entry"),
        ):
            assert policy.evaluate(permanent, 1, 4).action == RetryAction.FAIL, name
        for retryable in (transient, OSError("connection reset"), TimeoutError()):
            assert policy.evaluate(retryable, 1, 4).action == RetryAction.DEFAULT, name


def test_the_daily_run_times_out_before_the_next_one_is_due(dag_bag):
    import datetime as dt

    dag = dag_bag.get_dag("daily_market_data")
    assert dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    # The shortest gap between two scheduled runs: a US date's (21:30 UTC) and the next, ASX-only,
    # date's (05:40 UTC the next morning).
    assert dag.dagrun_timeout < dt.timedelta(hours=8)


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
