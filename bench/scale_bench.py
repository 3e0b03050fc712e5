"""How the daily run grows with the universe, on the LocalExecutor and on Celery.

Each size runs the daily DAG through the real scheduler on a trading date of its own, beside IB's
own bound for the same work. See docs/benchmarks.md#scale.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench import daily_bench
from bench.process_tree import TreeMonitor
from ibkr_market_data import schema
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.airflow_stack import AirflowStack
from ibkr_market_data_dev.local_env import REPO_ROOT

log = logging.getLogger(__name__)

SIZES = (320, 1_000, 2_000, 5_000)
LATENCY_MS = 200
CELERY_WORKERS = 2
#: The local Redis, a database of its own so a test suite's broker (database 0) never meets it.
BENCH_BROKER_URL = "redis://127.0.0.1:6379/6"
#: IB's limit on open historical requests.
IB_OPEN_REQUESTS = 50
FIRST_DATE = dt.date(2025, 3, 27)
PLOT_FILE = Path(__file__).resolve().parent / "scale.png"


def ib_bound_seconds(symbols: int, in_flight: int, latency_s: float) -> float:
    """Return the least time IB allows: ``symbols`` requests, ``in_flight`` at once, each ``latency_s``."""
    return math.ceil(symbols / in_flight) * latency_s if symbols else 0.0


def in_flight_total(slots: int) -> int:
    """Return the requests open at once across the pool: slots x per-connection limit, under IB's 50."""
    try:
        from ibkr_market_data.grouping import in_flight_per_connection

        per_connection = in_flight_per_connection(slots)
    except ImportError:  # before symbol grouping: one request per task
        per_connection = 1
    return min(IB_OPEN_REQUESTS, slots * per_connection)


@contextmanager
def _databases(count: int) -> Iterator[list[str]]:
    """Yield the market-data database, migrated, then ``count - 1`` empty ones for Airflow's metadata."""
    server = local_postgres.server_url()
    urls = [
        local_postgres.create_database(server, prefix="ibkr_market_data_test_scale") for _ in range(count)
    ]
    try:
        schema.upgrade(urls[0])
        yield urls
    finally:
        for url in urls:
            local_postgres.drop_database(url)


@contextmanager
def _simulator(extra: int) -> Iterator[Any]:
    from ibkr_market_data_dev.simulated_ib import shipped_listings, simulator_config
    from tws_simulator.testing import SimulatorThread
    from tws_simulator.universe import synthetic_listings

    config = simulator_config(port=0, universe=shipped_listings() + synthetic_listings(extra))
    with SimulatorThread(config) as simulator:
        yield simulator


def _load_universe(market_db: str, ibkr_uri: str, extra: int) -> dict[str, Any]:
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.symbols import load_symbols
    from ibkr_market_data_dev.simulated_ib import SYNTHETIC_SYMBOLS_VARIABLE, local_universe

    os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = ibkr_uri
    universe = local_universe({SYNTHETIC_SYMBOLS_VARIABLE: str(extra)})
    started = time.perf_counter()
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook, universe)
    return {
        "loaded": report.loaded,
        "resolved": len(report.resolved),
        "unresolved": len(report.unresolved),
        "seconds": round(time.perf_counter() - started, 1),
    }


def activate_first(market_db: str, size: int) -> int:
    """Make the first ``size`` symbols (by priority, then id) the active ones; returns how many are."""
    with psycopg.connect(market_db) as conn:
        conn.execute(
            """
            UPDATE symbols SET active = id IN (
                SELECT id FROM symbols WHERE con_id IS NOT NULL ORDER BY priority, id LIMIT %s)
            """,
            (size,),
        )
        (active,) = conn.execute("SELECT COUNT(*) FROM symbols WHERE active").fetchone() or (0,)
    return int(active)


def _stack(workdir: Path, market_db: str, metadata_db: str, ibkr_uri: str, executor: str) -> AirflowStack:
    slots = daily_bench.pool_slots()
    env = {
        "AIRFLOW_CONN_MARKET_DATA_DB": market_db,
        "AIRFLOW_CONN_IBKR_DEFAULT": ibkr_uri,
        "AIRFLOW__CORE__DAGS_FOLDER": str(_dags_folder(workdir)),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": str(slots),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": schema.sqlalchemy_url(metadata_db),
    }
    options: dict[str, Any] = {}
    if executor == "celery":
        options = {
            "executor": "celery",
            "workers": CELERY_WORKERS,
            # Each worker may run as many tasks as the pool has slots: the pool is the bound.
            "worker_concurrency": slots // CELERY_WORKERS,
            "broker_url": os.environ.get("AIRFLOW__CELERY__BROKER_URL", BENCH_BROKER_URL),
        }
    return AirflowStack(workdir / f"home-{executor}", port=daily_bench.free_port(), env=env, **options)


def _dags_folder(workdir: Path) -> Path:
    dags = workdir / "dags"
    if not dags.exists():
        dags.mkdir()
        shutil.copy2(daily_bench.DAILY_DAG_FILE, dags / daily_bench.DAILY_DAG_FILE.name)
    return dags


def _measure_sizes(
    stack: AirflowStack,
    market_db: str,
    simulator: Any,
    sizes: Sequence[int],
    dates: Sequence[dt.date],
    latency_s: float,
    executor: str,
) -> list[dict[str, Any]]:
    stack.start()
    try:
        stack.import_pools(daily_bench.POOLS_FILE)
        stack.wait_for_dag(daily_bench.DAILY_DAG_ID)
        stack.unpause(daily_bench.DAILY_DAG_ID)
        roots = [process.pid for process in stack.processes.values()]
        monitor = TreeMonitor(roots)
        rows = []
        for size, day in zip(sizes, dates, strict=True):
            active = activate_first(market_db, size)
            requests_before = len(simulator.request_log.historical())
            figures = daily_bench.measure_run(
                stack, monitor, daily_bench.DAILY_DAG_ID, {"date": day.isoformat()}, "collect"
            )
            checks = daily_bench.daily_checks(market_db, simulator, day, figures["run_id"], requests_before)
            slots = daily_bench.pool_slots()
            rows.append(
                {
                    "executor": executor,
                    "symbols": active,
                    "date": day.isoformat(),
                    "state": figures["state"],
                    "wall_s": figures["wall_s"],
                    "cpu_s": figures["cpu_s"],
                    "peak_pss_mib": figures["peak_pss_mib"],
                    "peak_rss_mib": figures["peak_rss_mib"],
                    "task_instances": figures["task_instances"],
                    "ib_bound_s": round(ib_bound_seconds(active, in_flight_total(slots), latency_s), 1),
                    "checks": checks,
                }
            )
            log.info("%s, %d symbols: %s in %.1f s", executor, active, figures["state"], figures["wall_s"])
    finally:
        stack.stop()
    return rows


def run(
    sizes: Sequence[int] = SIZES,
    celery_sizes: Sequence[int] = (SIZES[-1],),
    latency_ms: int = LATENCY_MS,
) -> dict[str, Any]:
    """Measure the daily run at each size on LocalExecutor, and at ``celery_sizes`` on Celery."""
    latency_s = latency_ms / 1000
    extra = max(0, max(sizes) - 320)
    dates = daily_bench.trading_dates(len(sizes) + len(celery_sizes), FIRST_DATE)
    workdir = Path(tempfile.mkdtemp(prefix="ibkr-market-data-scale-"))
    results: dict[str, Any] = {
        "settings": {
            "latency_ms": latency_ms,
            "pool_slots": daily_bench.pool_slots(),
            "in_flight_total": in_flight_total(daily_bench.pool_slots()),
            "celery_workers": CELERY_WORKERS,
            "sizes": list(sizes),
        }
    }
    with ExitStack() as cleanup:
        cleanup.enter_context(daily_bench.restored_environment("AIRFLOW_CONN_IBKR_DEFAULT", "AIRFLOW_HOME"))
        os.environ["AIRFLOW_HOME"] = str(workdir / "client-home")
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        market_db, local_metadata, celery_metadata = cleanup.enter_context(_databases(3))
        simulator = cleanup.enter_context(_simulator(extra))
        ibkr_uri = (
            f"ibkr://{simulator.host}:{simulator.port}?client_id=1&client_id_range=32&request_timeout=30"
        )
        results["universe"] = _load_universe(market_db, ibkr_uri, extra)
        simulator.faults.set(None, latency_ms=latency_ms)
        rows = _measure_sizes(
            _stack(workdir, market_db, local_metadata, ibkr_uri, "local"),
            market_db,
            simulator,
            sizes,
            dates[: len(sizes)],
            latency_s,
            "LocalExecutor",
        )
        if celery_sizes:
            rows += _measure_sizes(
                _stack(workdir, market_db, celery_metadata, ibkr_uri, "celery"),
                market_db,
                simulator,
                celery_sizes,
                dates[len(sizes) :],
                latency_s,
                f"CeleryExecutor, {CELERY_WORKERS} workers",
            )
    results["runs"] = rows
    results["plot"] = plot(rows, PLOT_FILE)
    return results


def plot(rows: Sequence[dict[str, Any]], path: Path) -> str:
    """Wall time against symbols, one line per executor, with IB's bound; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.2), dpi=110)
    for executor in dict.fromkeys(row["executor"] for row in rows):
        points = sorted((row["symbols"], row["wall_s"]) for row in rows if row["executor"] == executor)
        axes.plot(*zip(*points, strict=True), marker="o", label=f"daily run, {executor}")
    bound = sorted({(row["symbols"], row["ib_bound_s"]) for row in rows})
    axes.plot(*zip(*bound, strict=True), linestyle="--", color="grey", label="IB's bound")
    axes.axhline(120, color="red", linewidth=0.8, linestyle=":", label="goal: 2 minutes")
    axes.set_xlabel("active symbols")
    axes.set_ylabel("trigger to success, s")
    axes.set_title("Daily run wall time by universe size (2 CPUs)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    pyplot.close(figure)
    return path.name
