"""The daily DAG on the CeleryExecutor with two workers, one of them killed mid-run.

The broker is the machine's Redis (127.0.0.1:6379, as ``make run EXECUTOR=celery`` finds it); task
results go to the stack's metadata database. A worker is SIGKILLed (its whole process group) while
collect tasks run on both: its tasks' heartbeats stop, the scheduler fails them after the heartbeat
timeout, and their retries run on the other worker. Nothing may be lost, revised or asked twice.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

import psycopg
import pytest

from ibkr_market_data import schema
from ibkr_market_data.settings import DAILY_LOOKBACK_SESSIONS
from ibkr_market_data.universe import load_universe
from ibkr_market_data_dev import local_env, local_postgres
from ibkr_market_data_dev.airflow_stack import AirflowStack
from ibkr_market_data_dev.simulated_ib import simulator_config, stored_bar
from tests.fixtures.airflow_stack import running_stack
from tws_simulator.testing import SimulatorThread

pytestmark = pytest.mark.scheduler

#: Task slots per worker: with more collect tasks running than one worker holds, both are busy.
WORKER_SLOTS = 4
DAG_ID = "daily_market_data"
TRADING_DATE = dt.date(2025, 1, 15)
#: Each run fetches every symbol's last sessions: all of them are checked, not only the date's.
LOOKBACK = DAILY_LOOKBACK_SESSIONS
#: Twice the two workers' slots: both are full when one is killed, and tasks are still queued then.
SYMBOLS = tuple(s.symbol for s in load_universe() if s.primary_exchange == "NASDAQ")[: 4 * WORKER_SLOTS]
#: How soon the scheduler gives up on a silent task, and on a task queued with no worker taking it.
RECOVERY_SETTINGS = {
    # One symbol per task instance, so that a symbol's requests can be held to its own task's tries.
    "IBKR_MAX_MAPPED_TASKS": str(len(SYMBOLS)),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    # A retry 1 s after its failure, not 30 s (a cluster policy): where retries run is what counts here.
    "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent / "celery_settings"), os.environ.get("PYTHONPATH", "")]
    ),
}


@pytest.fixture(scope="module")
def celery_stack(market_db_server: str) -> Iterator[tuple[AirflowStack, SimulatorThread, str]]:
    market_db = local_postgres.create_database(market_db_server)
    metadata_db = local_postgres.create_database(market_db_server)
    schema.upgrade(market_db)
    try:
        with (
            SimulatorThread(simulator_config(port=0)) as simulator,
            running_stack(
                market_db,
                metadata_db,
                simulator,
                SYMBOLS,
                env=RECOVERY_SETTINGS,
                executor="celery",
                workers=2,
                worker_concurrency=WORKER_SLOTS,
                broker_url=local_env.celery_broker_url(),
            ) as stack,
        ):
            # Slow answers keep collect tasks running on both workers when one is killed. Set once
            # the symbols are loaded: resolving every contract at this pace only slowed the setup.
            simulator.faults.set(None, latency_ms=500)
            yield stack, simulator, market_db
    finally:
        local_postgres.drop_database(market_db)
        local_postgres.drop_database(metadata_db)


def _running_collects(stack: AirflowStack, run_id: str) -> int:
    return sum(
        1
        for ti in stack.task_instances(DAG_ID, run_id)
        if ti["task_id"] == "collect" and ti["state"] == "running"
    )


def test_a_worker_killed_mid_run_loses_nothing_and_asks_ib_again_only_what_it_lost(celery_stack) -> None:
    stack, simulator, market_db = celery_stack
    stack.wait_for_dag(DAG_ID)
    run_id = stack.trigger(DAG_ID, {"date": TRADING_DATE.isoformat()})
    stack.unpause(DAG_ID)

    deadline = time.monotonic() + 300
    while _running_collects(stack, run_id) <= WORKER_SLOTS:
        assert time.monotonic() < deadline, "collect tasks never ran on the workers"
        time.sleep(0.5)
    stack.kill_worker("worker1")
    assert list(stack.worker_pids()) == ["worker2"]

    run = stack.wait_for_run(DAG_ID, run_id, timeout=900)
    assert run["state"] == "success"

    # Every session of each symbol's lookback window, compared with what the simulator serves (the
    # primary key forbids a second row, so counting rows would prove nothing).
    now = dt.datetime.now(dt.UTC)
    first = TRADING_DATE - dt.timedelta(days=30)
    served = {
        (symbol, bar.timestamp): astuple(bar)[1:]
        for symbol in SYMBOLS
        for bar in (
            stored_bar(b) for b in simulator.served.daily_bars(symbol, first, TRADING_DATE, now)[-LOOKBACK:]
        )
    }
    with psycopg.connect(market_db) as conn:
        stored = {
            (symbol, timestamp): tuple(values)
            for symbol, timestamp, *values in conn.execute(
                """
                SELECT s.symbol, md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap,
                       md.bar_count
                FROM market_data md JOIN symbols s ON s.id = md.symbol_id
                WHERE md.timeframe = '1day' AND md.timestamp BETWEEN %s AND %s
                """,
                (dt.datetime.combine(first, dt.time()), dt.datetime.combine(TRADING_DATE, dt.time())),
            ).fetchall()
        }
        revisions = conn.execute("SELECT COUNT(*) FROM bar_revisions").fetchone()
    assert len(served) >= len(SYMBOLS)
    assert stored == served
    assert revisions == (0,), "a retry storing the same bar again is no revision"

    # A symbol is asked for again only by a retry of its task: no more requests than tries. (The
    # scheduler's own run of the latest trading date, made when the DAG was unpaused, asks too.)
    instances = stack.task_instances(DAG_ID, run_id)
    tries = {ti["rendered_map_index"]: ti["try_number"] for ti in instances if ti["task_id"] == "collect"}
    requests = Counter(
        record.symbol
        for record in simulator.request_log.historical()
        if record.end_date_time.startswith(f"{TRADING_DATE:%Y%m%d}")
    )
    assert set(requests) == set(SYMBOLS)
    assert {symbol for symbol in SYMBOLS if requests[symbol] > tries[symbol]} == set()
    retried = [ti for ti in instances if ti["try_number"] > 1]
    assert retried, "the killed worker's tasks were retried on the other one"
    assert all(ti["state"] == "success" for ti in retried)
    summary = next(ti for ti in instances if ti["task_id"] == "summary")
    assert summary["state"] == "success"
    assert simulator.violations() == []
