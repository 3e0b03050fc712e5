"""The daily run of the whole universe under the real scheduler, beside Airflow's own floor.

One ``airflow standalone`` runs the daily DAG and a DAG of as many trivial mapped tasks, against the
simulator in this process; everything started is stopped on the way out. See docs/benchmarks.md#daily.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import platform
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.process_tree import TreeMonitor, postmaster_pid
from bench.steady_state import Prefill
from ibkr_market_data import schema
from ibkr_market_data.settings import DAILY_EXCHANGES, DAILY_LOOKBACK_SESSIONS, IBKR_POOL
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.airflow_stack import AirflowStack, AirflowStackError
from ibkr_market_data_dev.local_env import REPO_ROOT

log = logging.getLogger(__name__)

DAILY_DAG_ID = "daily_market_data"
TRIVIAL_DAG_ID = "bench_trivial_mapped"
DAILY_DAG_FILE = REPO_ROOT / "dags" / "daily_market_data.py"
TRIVIAL_DAG_FILE = Path(__file__).resolve().parent / "trivial_dags" / "trivial_mapped.py"
POOLS_FILE = REPO_ROOT / "pools.json"

#: The first trading date collected; later repeats step back one date where every exchange trades.
FIRST_DATE = dt.date(2025, 6, 27)
LATENCY_MS = 200
RUN_TIMEOUT_SECONDS = 900
IDLE_SECONDS = 15.0
POLL_SECONDS = 0.5

# The original cron script's schedule, as the original cron system's README documents it.
ORIGINAL_BATCH_SIZE = 50
ORIGINAL_BATCH_PAUSE_SECONDS = 600
ORIGINAL_REQUEST_DELAY_SECONDS = 6


def ib_bound_seconds(symbols: int, in_flight: int, latency_s: float) -> float:
    """Return IB's lower bound for daily bars: no pacing limit applies, so ceil(N / in-flight) x latency."""
    return math.ceil(symbols / in_flight) * latency_s if symbols else 0.0


def original_schedule_seconds(symbols: int, latency_s: float) -> float:
    """Return the cron script's time: ceil(N / 50) batches x 10 min + N x (6 s delay + the latency).

    That is the arithmetic of the original cron system's README (309 symbols: 7 x 10 min + ~31 min =
    ~100 min); strictly a pause only falls *between* batches, which would take 10 minutes off.
    """
    batches = math.ceil(symbols / ORIGINAL_BATCH_SIZE)
    return batches * ORIGINAL_BATCH_PAUSE_SECONDS + symbols * (ORIGINAL_REQUEST_DELAY_SECONDS + latency_s)


def trading_dates(count: int, first: dt.date = FIRST_DATE) -> list[dt.date]:
    """Return ``count`` dates from ``first`` backwards on which every daily exchange has a session."""
    from ibkr_market_data import calendars

    dates: list[dt.date] = []
    day = first
    while len(dates) < count:
        if all(calendars.is_session(exchange, day) for exchange in DAILY_EXCHANGES):
            dates.append(day)
        day -= dt.timedelta(days=1)
    return dates


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that no one listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pool_slots(pool: str = IBKR_POOL) -> int:
    """Return the slots of ``pool`` as pools.json declares them."""
    return int(json.loads(POOLS_FILE.read_text())[pool]["slots"])


def _timestamp(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _seconds_between(start: str | None, end: str | None) -> float | None:
    first, last = _timestamp(start), _timestamp(end)
    return round((last - first).total_seconds(), 1) if first and last else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


# -- setup --------------------------------------------------------------------------------------


@contextmanager
def restored_environment(*names: str) -> Iterator[None]:
    """Give ``names`` back their values on the way out (later sections run in this process too)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _metadata_database() -> Iterator[str]:
    """Yield an empty database for Airflow's metadata; dropped on the way out."""
    url = local_postgres.create_database(
        local_postgres.server_url(), prefix="ibkr_market_data_test_bench_meta"
    )
    try:
        yield url
    finally:
        local_postgres.drop_database(url)


@contextmanager
def _simulator() -> Iterator[Any]:
    from ibkr_market_data_dev.simulated_ib import simulator_config
    from tws_simulator.testing import SimulatorThread

    with SimulatorThread(simulator_config(port=0)) as simulator:
        yield simulator


def _load_universe(market_db: str, ibkr_uri: str) -> dict[str, Any]:
    """Load and resolve the whole shipped universe through the simulator (no latency yet)."""
    os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = ibkr_uri
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.symbols import load_symbols

    started = time.perf_counter()
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook)
    return {
        "loaded": report.loaded,
        "resolved": len(report.resolved),
        "unresolved": sorted(report.unresolved),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _dags_folder(workdir: Path) -> Path:
    dags = workdir / "dags"
    dags.mkdir()
    shutil.copy2(DAILY_DAG_FILE, dags / DAILY_DAG_FILE.name)
    shutil.copy2(TRIVIAL_DAG_FILE, dags / TRIVIAL_DAG_FILE.name)
    return dags


# -- measuring one run --------------------------------------------------------------------------


def _retrying(call: Any, what: str, attempts: int = 5) -> Any:
    """Return ``call()``, asked again when a busy api-server misses the client's 30 s read timeout."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (OSError, AirflowStackError) as exc:
            if attempt == attempts:
                raise
            log.warning("%s failed (attempt %d of %d), retrying: %s", what, attempt, attempts, exc)
            time.sleep(2)
    raise AssertionError("unreachable")


def _task_instances(stack: AirflowStack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Return every task instance of the run (``AirflowStack.task_instances`` pages through them)."""
    return _retrying(lambda: stack.task_instances(dag_id, run_id), "Listing task instances")


def _wait_finished(
    stack: AirflowStack, dag_id: str, run_id: str, timeout_s: float = RUN_TIMEOUT_SECONDS
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = _retrying(lambda: stack.dag_run(dag_id, run_id), f"Polling run {run_id}")
        if run["state"] in {"success", "failed"}:
            return run
        if time.monotonic() > deadline:
            raise AirflowStackError(f"Run {run_id} of {dag_id} did not finish within {timeout_s:g} s")
        time.sleep(POLL_SECONDS)


def _task_figures(task_instances: list[dict[str, Any]], mapped_task: str) -> dict[str, Any]:
    mapped = [ti for ti in task_instances if ti["task_id"] == mapped_task]
    durations = [float(ti["duration"]) for ti in mapped if ti.get("duration") is not None]
    waits = [
        wait
        for ti in mapped
        if (wait := _seconds_between(ti.get("queued_when"), ti.get("start_date"))) is not None
    ]
    starts = [_timestamp(ti.get("start_date")) for ti in mapped]
    ends = [_timestamp(ti.get("end_date")) for ti in mapped]
    span = None
    if mapped and all(starts) and all(ends):
        span = round((max(ends) - min(starts)).total_seconds(), 1)  # type: ignore[type-var,operator]
    states: dict[str, int] = {}
    for ti in task_instances:
        states[ti["state"]] = states.get(ti["state"], 0) + 1
    return {
        "task_instances": len(task_instances),
        "mapped_tasks": len(mapped),
        "states": states,
        "retried_tasks": sum(1 for ti in task_instances if int(ti.get("try_number") or 1) > 1),
        "mapped_duration_median_s": _median(durations),
        "mapped_duration_p90_s": _percentile(durations, 0.9),
        "mapped_queue_wait_median_s": _median(waits),
        "mapped_span_s": span,
        "mapped_tasks_per_s": round(len(mapped) / span, 2) if span else None,
    }


def measure_run(
    stack: AirflowStack,
    monitor: TreeMonitor,
    dag_id: str,
    conf: dict[str, Any],
    mapped_task: str,
    timeout_s: float = RUN_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Trigger ``dag_id`` and measure it until it finishes, or fail after ``timeout_s``."""
    monitor.start()
    started = time.perf_counter()
    try:
        run_id = stack.trigger(dag_id, conf)
        run = _wait_finished(stack, dag_id, run_id, timeout_s)
        wall = time.perf_counter() - started
    finally:
        usage = monitor.stop()
    figures = _task_figures(_task_instances(stack, dag_id, run_id), mapped_task)
    log.info("%s %s: %s in %.1f s, %.1f CPU-s", dag_id, run_id, run["state"], wall, usage.cpu_seconds)
    tasks = figures["task_instances"] or 1
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "conf": conf,
        "state": run["state"],
        "wall_s": round(wall, 1),
        "airflow_queued_to_end_s": _seconds_between(run.get("queued_at"), run.get("end_date")),
        "airflow_start_to_end_s": _seconds_between(run.get("start_date"), run.get("end_date")),
        "cpu_s": usage.cpu_seconds,
        "cpu_s_per_task": round(usage.cpu_seconds / tasks, 2),
        "peak_rss_mib": usage.peak_rss_mib,
        "peak_pss_mib": usage.peak_pss_mib,
        "peak_processes": usage.peak_processes,
        "bench_process_cpu_s": usage.own_cpu_seconds,
        "postgres_cpu_s": usage.server_cpu_seconds,
        "postgres_cpu_s_per_task": round(usage.server_cpu_seconds / tasks, 2),
        "other_processes_cpu_s": usage.other_cpu_seconds,
        "other_processes_cpu_share": round(usage.other_cpu_seconds / (wall * (os.cpu_count() or 1)), 2),
        "load_average_after": usage.load_average_after,
        "cpu_s_by_component": usage.cpu_by_component,
        **figures,
    }


def daily_checks(market_db: str, simulator: Any, day: dt.date, run_id: str, requests_before: int) -> dict:
    """Return what run ``run_id`` stored for ``day`` and what it asked the simulator: proof of the work."""
    with psycopg.connect(market_db) as conn:
        rows = conn.execute(
            "SELECT COUNT(*) FROM market_data WHERE timestamp = %s AND timeframe = '1day'",
            (dt.datetime.combine(day, dt.time()),),
        ).fetchone()[0]
        statuses = dict(
            conn.execute(
                "SELECT status, COUNT(*) FROM collection_logs WHERE run_id = %s GROUP BY status", (run_id,)
            ).fetchall()
        )
    violations = simulator.violations()
    return {
        "market_data_rows": rows,
        "collection_log_statuses": statuses,
        "ib_historical_requests": len(simulator.request_log.historical()) - requests_before,
        "simulator_violations": len(violations),
        "violation_examples": [str(violation) for violation in violations[:5]],
    }


# -- the section --------------------------------------------------------------------------------

#: The daily DAG's conf per workload: the shipped default (daily bars for every symbol, intraday bars
#: for priority 1, as configured) and daily bars only.
WORKLOADS: dict[str, dict[str, Any]] = {"default": {}, "daily_only": {"timeframe": "1day"}}
#: Task instances of the trivial DAG beside its mapped ones (make_items, done).
TRIVIAL_UNMAPPED = 2
#: The goal: a daily run costs at most this many times Airflow's floor for as many task instances.
TARGET_RATIO = 1.3


def trivial_items(daily_task_instances: int) -> int:
    """Return the trivial DAG's ``n`` that makes as many task instances as the daily run had."""
    return max(0, daily_task_instances - TRIVIAL_UNMAPPED)


def requests_by_bar_size(simulator: Any, since: int) -> dict[str, int]:
    """Return the historical requests the simulator received after the first ``since``, per bar size."""
    counts: dict[str, int] = {}
    for record in simulator.request_log.historical()[since:]:
        counts[record.bar_size] = counts.get(record.bar_size, 0) + 1
    return counts


def measure_pair(
    stack: AirflowStack,
    monitor: TreeMonitor,
    market_db: str,
    template_db: str,
    simulator: Any,
    day: dt.date,
    workload: str,
    prefill: Prefill,
) -> dict[str, Any]:
    """Measure one daily run on a fresh copy of the template, verify it, then the floor at as many instances.

    :param prefill: what the template holds (``steady_state.prefill``): not the run's work.
    """
    from bench import fresh_db, verify
    from bench.steady_state import intraday_requests_per_symbol_day, steady_state
    from campaign.observe import plan_keys

    fresh_db.recreate(market_db, template_db)
    # A fresh copy holds the template's bars and nothing else: no earlier repeat's.
    bars_before = fresh_db.bar_count(market_db) - prefill.bars
    requests_before = len(simulator.request_log.historical())
    started = dt.datetime.now(dt.UTC)
    conf = {"date": day.isoformat(), **WORKLOADS[workload]}
    daily = measure_run(stack, monitor, DAILY_DAG_ID, conf, "collect")
    daily["checks"] = daily_checks(market_db, simulator, day, daily["run_id"], requests_before)
    daily["requests_by_bar_size"] = requests_by_bar_size(simulator, requests_before)
    with psycopg.connect(market_db) as conn:
        planned = plan_keys(conn, [(DAILY_DAG_ID, daily["run_id"])])
    steady = steady_state(planned, prefill.keys, day)
    daily["steady_state"] = steady.to_dict()
    daily["intraday_requests"] = intraday_requests_per_symbol_day(
        daily["requests_by_bar_size"], planned, prefill.keys
    )
    verification = verify.verify_run(
        market_db, simulator, DAILY_DAG_ID, daily["run_id"], started, stored_by_bench=prefill.keys
    )
    daily["verification"] = verification.to_dict()
    daily["bars_before"] = bars_before
    log.info("%s run verified: %s; steady state: %s", workload, daily["verification"], daily["steady_state"])
    trivial = measure_run(
        stack, monitor, TRIVIAL_DAG_ID, {"n": trivial_items(daily["task_instances"])}, "work"
    )
    return {
        "workload": workload,
        "date": day.isoformat(),
        "daily": daily,
        "trivial": trivial,
        "verified": verification.ok and steady.ok and bars_before == 0 and daily["state"] == "success",
        "same_task_instances": daily["task_instances"] == trivial["task_instances"],
        **ratios(daily, trivial),
    }


def ratios(daily: dict[str, Any], trivial: dict[str, Any]) -> dict[str, float | None]:
    """Return the daily run against the floor: wall per task instance and CPU per task instance."""
    daily_tis, trivial_tis = daily["task_instances"] or 1, trivial["task_instances"] or 1
    per_instance = (
        (daily["wall_s"] / daily_tis) / (trivial["wall_s"] / trivial_tis) if trivial["wall_s"] else None
    )
    cpu = (daily["cpu_s"] / daily_tis) / (trivial["cpu_s"] / trivial_tis) if trivial["cpu_s"] else None
    return {
        "wall_s_per_instance": round(daily["wall_s"] / daily_tis, 3),
        "trivial_wall_s_per_instance": round(trivial["wall_s"] / trivial_tis, 3),
        "ratio_per_instance": round(per_instance, 3) if per_instance is not None else None,
        "cpu_ratio_per_instance": round(cpu, 3) if cpu is not None else None,
    }


def run(
    repeats: int = 3,
    latency_ms: int = LATENCY_MS,
    keep: bool = False,
    symbols: int | None = None,
    workloads: tuple[str, ...] = tuple(WORKLOADS),
) -> dict[str, Any]:
    """Start everything, measure ``repeats`` pairs per workload, each on a fresh database; the figures.

    :param symbols: make only the first this many symbols (by priority) active; all when None.
    """
    from bench import fresh_db, steady_state
    from bench.scale_bench import activate_first

    slots = pool_slots()
    latency_s = latency_ms / 1000
    (day,) = trading_dates(1)
    workdir = Path(tempfile.mkdtemp(prefix="ibkr-market-data-bench-"))
    results: dict[str, Any] = {
        "settings": {
            "latency_ms": latency_ms,
            "pool_slots": slots,
            "parallelism": slots,
            "repeats": repeats,
            "date": day.isoformat(),
            "workloads": {name: WORKLOADS[name] for name in workloads},
            "fresh_database_per_repeat": True,
            "executor": "LocalExecutor (airflow standalone, metadata on PostgreSQL)",
        },
        "runs": [],
    }
    with ExitStack() as cleanup:
        cleanup.enter_context(restored_environment("AIRFLOW_CONN_IBKR_DEFAULT"))
        # SQLite metadata locked up the scheduler on a loaded machine ("database is locked").
        metadata_db = cleanup.enter_context(_metadata_database())
        # This process imports Airflow (the IBKR hook) to load the universe: keep it out of ~/airflow.
        os.environ.setdefault("AIRFLOW_HOME", str(workdir / "client-home"))
        if keep:
            log.info("Keeping %s (Airflow home and logs)", workdir)
        else:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        template_db = cleanup.enter_context(fresh_db.template())
        simulator = cleanup.enter_context(_simulator())
        ibkr_uri = (
            f"ibkr://{simulator.host}:{simulator.port}?client_id=1&client_id_range=32&request_timeout=20"
        )
        results["universe"] = _load_universe(template_db, ibkr_uri)
        results["settings"]["active_symbols"] = activate_first(template_db, symbols or 10**9)
        # Steady state: the template holds the lookback's sessions before the date, as IB serves them.
        prefill = steady_state.prefill(
            template_db, simulator.served, day, DAILY_LOOKBACK_SESSIONS, simulator.simulator.now()
        )
        filled = {"lookback_sessions": DAILY_LOOKBACK_SESSIONS, **prefill.to_dict()}
        results["settings"]["steady_state"] = filled
        log.info("Template filled up to the day before %s: %s", day, filled)
        market_db = cleanup.enter_context(fresh_db.measured(template_db))
        simulator.faults.set(None, latency_ms=latency_ms)

        stack = AirflowStack(
            workdir / "home",
            port=free_port(),
            env={
                "AIRFLOW_CONN_MARKET_DATA_DB": market_db,
                "AIRFLOW_CONN_IBKR_DEFAULT": ibkr_uri,
                "AIRFLOW__CORE__DAGS_FOLDER": str(_dags_folder(workdir)),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__PARALLELISM": str(slots),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": schema.sqlalchemy_url(metadata_db),
            },
        )
        started = time.perf_counter()
        stack.start()
        cleanup.callback(stack.stop)
        stack.import_pools(POOLS_FILE)
        for dag_id in (DAILY_DAG_ID, TRIVIAL_DAG_ID):
            stack.wait_for_dag(dag_id)
            stack.unpause(dag_id)
        results["settings"]["stack_start_s"] = round(time.perf_counter() - started, 1)
        assert stack.process is not None
        # PostgreSQL's backends do the runs' writes (and Airflow's metadata): not "other processes".
        monitor = TreeMonitor(stack.process.pid, server_pids=[postmaster_pid(market_db)])
        idle_before = monitor.cpu_now()
        time.sleep(IDLE_SECONDS)
        results["idle_cpu_s_per_s"] = round((monitor.cpu_now() - idle_before) / IDLE_SECONDS, 3)

        for repeat in range(repeats):
            # Alternate the workloads' order, so a drift of the machine falls on both alike.
            order = workloads if repeat % 2 == 0 else tuple(reversed(workloads))
            for workload in order:
                pair = measure_pair(stack, monitor, market_db, template_db, simulator, day, workload, prefill)
                pair["repeat"] = repeat + 1
                results["runs"].append(pair)
        results["logs"] = str(workdir / "home" / "logs") if keep else None

    results["summary"] = summarize(results, latency_s, slots)
    results["machine"] = {"nproc": os.cpu_count(), "python": platform.python_version()}
    return results


def summarize(results: dict[str, Any], latency_s: float, slots: int) -> dict[str, Any]:
    """Per workload: medians with min–max of the figures, and the verdict on the per-instance ratio."""
    from bench.figures import spread, verdict
    from ibkr_market_data.grouping import in_flight_per_connection

    in_flight = min(48, slots * in_flight_per_connection(slots))
    summary: dict[str, Any] = {"target_ratio": TARGET_RATIO}
    for workload in dict.fromkeys(pair["workload"] for pair in results["runs"]):
        pairs = [pair for pair in results["runs"] if pair["workload"] == workload]
        verified = [pair["verified"] and pair["same_task_instances"] for pair in pairs]
        statuses = pairs[0]["daily"]["checks"]["collection_log_statuses"]
        symbols = results["settings"].get("active_symbols")
        requests = spread([pair["daily"]["checks"]["ib_historical_requests"] for pair in pairs], 0)
        summary[workload] = {
            "verdict": verdict([pair["ratio_per_instance"] for pair in pairs], TARGET_RATIO, verified),
            "cpu_ratio_per_instance": spread([pair["cpu_ratio_per_instance"] for pair in pairs]),
            "daily_wall_s": spread([pair["daily"]["wall_s"] for pair in pairs], 1),
            "trivial_wall_s": spread([pair["trivial"]["wall_s"] for pair in pairs], 1),
            "task_instances": spread([pair["daily"]["task_instances"] for pair in pairs], 0),
            "wall_s_per_instance": spread([pair["wall_s_per_instance"] for pair in pairs], 3),
            "trivial_wall_s_per_instance": spread([pair["trivial_wall_s_per_instance"] for pair in pairs], 3),
            "wall_s_per_symbol": spread(
                [pair["daily"]["wall_s"] / symbols for pair in pairs] if symbols else [], 3
            ),
            "ib_requests": requests,
            "requests_by_bar_size": pairs[0]["daily"]["requests_by_bar_size"],
            "requests_per_symbol_timeframe": spread(
                [
                    pair["daily"]["checks"]["ib_historical_requests"] / steady["symbol_timeframes"]
                    for pair in pairs
                    if (steady := pair["daily"].get("steady_state")) and steady["symbol_timeframes"]
                ],
                2,
            ),
            "intraday_requests_per_symbol_day": spread(
                [
                    figure
                    for pair in pairs
                    if (figure := pair["daily"].get("intraday_requests", {}).get("per_symbol_day"))
                    is not None
                ],
                2,
            ),
            "intraday_requests": pairs[0]["daily"].get("intraday_requests"),
            "steady_state_repeats": sum(
                1 for pair in pairs if pair["daily"].get("steady_state", {}).get("ok")
            ),
            "collection_log_statuses": statuses,
            "planned_bars": spread([pair["daily"]["verification"]["planned_bars"] for pair in pairs], 0),
            "verified_repeats": sum(verified),
            "ib_bound_s": round(ib_bound_seconds(int(requests["median"] or 0), in_flight, latency_s), 1),
        }
    return summary
