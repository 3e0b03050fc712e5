"""A run with more symbols than task instances: groups collected concurrently over one connection each."""

import datetime as dt
import itertools

import psycopg
import pytest

from ibkr_market_data import repository
from ibkr_market_data.errors import CollectionError
from ibkr_market_data.repository import RunContext
from ibkr_market_data.tasks import daily
from tests.integration.conftest import SMALL_UNIVERSE

DAY = dt.date(2025, 1, 15)
#: Eight symbols in three task instances: groups of 3, 3 and 2.
MAX_INSTANCES = 3


@pytest.fixture
def daily_dag(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    monkeypatch.setenv("IBKR_MAX_MAPPED_TASKS", str(MAX_INSTANCES))
    dag_bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "daily_market_data.py"))
    assert not dag_bag.import_errors
    return dag_bag.get_dag("daily_market_data")


def most_open_at_once(records):
    """Return the most requests each client had open at the same moment."""
    events = sorted(
        [(record.received_at, 1, record.client_id) for record in records]
        + [(record.answered_at, -1, record.client_id) for record in records]
    )
    open_now: dict[int, int] = {}
    most: dict[int, int] = {}
    for _, change, client_id in events:
        open_now[client_id] = open_now.get(client_id, 0) + change
        most[client_id] = max(most.get(client_id, 0), open_now[client_id])
    return most


def attempts(url, run_id):
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT s.symbol, cl.status, cl.try_number
            FROM collection_logs cl JOIN symbols s ON s.id = cl.symbol_id
            WHERE cl.run_id = %s ORDER BY s.symbol, cl.try_number
            """,
            (run_id,),
        ).fetchall()


def test_groups_collect_concurrently_one_attempt_row_per_symbol(
    daily_dag, small_universe, market_db, ibkr_connection
):
    ibkr_connection.faults.set(None, latency_ms=150)
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat()})
    assert dag_run.state == "success"

    collect_tis = [ti for ti in dag_run.get_task_instances() if ti.task_id == "collect"]
    assert len(collect_tis) == MAX_INSTANCES
    sizes = sorted(ti.rendered_map_index.rsplit(" ", 1)[-1] for ti in collect_tis)
    assert sizes == ["(2)", "(3)", "(3)"], "the map index names each group and its size"
    assert sorted((symbol, status) for symbol, status, _ in attempts(market_db, dag_run.run_id)) == sorted(
        (symbol, "completed") for symbol in SMALL_UNIVERSE
    )
    records = ibkr_connection.request_log.historical()
    assert len(records) == len(SMALL_UNIVERSE)
    per_client = most_open_at_once(records)
    # dag.test() runs the groups one after another, each on its one connection; a later group may
    # lease the client id an earlier one released, so count the runs of one id in request order.
    ids_in_order = [record.client_id for record in sorted(records, key=lambda record: record.received_at)]
    connections = 1 + sum(1 for before, after in itertools.pairwise(ids_in_order) if before != after)
    assert connections <= MAX_INSTANCES, "one connection (client id) per group"
    assert max(per_client.values()) > 1, "a group had several requests in flight on its connection"
    assert max(per_client.values()) <= 3, "never more than the in-flight limit per connection"
    assert ibkr_connection.violations() == []


def test_a_symbol_failing_for_good_does_not_stop_its_group_and_is_named(
    daily_dag, small_universe, market_db, ibkr_connection, capsys
):
    ibkr_connection.faults.set("MSFT", no_permission=True)
    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat()})
    assert dag_run.state == "failed"

    statuses = {symbol: status for symbol, status, _ in attempts(market_db, dag_run.run_id)}
    assert statuses.pop("MSFT") == "failed"
    assert set(statuses.values()) == {"completed"} and len(statuses) == len(SMALL_UNIVERSE) - 1
    assert "1 symbols failed: MSFT" in capsys.readouterr().out

    # The next run of the date asks IB for MSFT alone.
    ibkr_connection.faults.clear_all()
    before = len(ibkr_connection.request_log.historical())
    rerun = daily_dag.test(run_conf={"date": DAY.isoformat()})
    assert rerun.state == "success"
    assert [record.symbol for record in ibkr_connection.request_log.historical()[before:]] == ["MSFT"]


def test_a_retried_group_requests_only_its_symbol_that_failed(
    daily_dag, small_universe, market_db, ibkr_connection, monkeypatch
):
    run = RunContext("daily_market_data", "manual__group")
    [group, *_] = daily.plan(DAY.isoformat(), {"date": DAY.isoformat()}, run)
    with psycopg.connect(market_db) as conn:
        symbols = [target["symbol"] for target in repository.planned_group(conn, run, group["index"])]
    assert len(symbols) == 3
    ibkr_connection.faults.set(symbols[1], pacing_violation=1)

    with pytest.raises(CollectionError) as raised:
        daily.collect(group, RunContext("daily_market_data", "manual__group", try_number=1))
    assert raised.value.retryable
    assert f"1 of 3 symbols failed: {symbols[1]}" in str(raised.value)

    before = len(ibkr_connection.request_log.historical())
    retry = daily.collect(group, RunContext("daily_market_data", "manual__group", try_number=2))
    assert (retry["completed"], retry["skipped"]) == (1, 2)
    assert [record.symbol for record in ibkr_connection.request_log.historical()[before:]] == [symbols[1]]
    assert attempts(market_db, "manual__group") == sorted(
        [(symbol, "completed", 1) for symbol in symbols if symbol != symbols[1]]
        + [(symbols[1], "failed", 1), (symbols[1], "completed", 2)]
        + [(symbol, "skipped", 2) for symbol in symbols if symbol != symbols[1]],
        key=lambda row: (row[0], row[2]),
    )
