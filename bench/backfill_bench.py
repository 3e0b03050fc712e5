"""Backfill benchmark: bulk writes, a year of the whole universe, and one run per date beside it.

``run(results)`` measures in this process, against a throwaway market-data database and the TWS
simulator. What each figure means: docs/benchmarks.md#backfill.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg

from ibkr_market_data import calendars, repository, schema
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.simulated_ib import stored_bar

log = logging.getLogger(__name__)

LATENCY_MS = 20
WORKERS = 8
REPEATS = 3
ROW_BY_ROW_SYMBOLS = 40
YEAR_START, YEAR_END = dt.date(2025, 1, 1), dt.date(2025, 12, 31)
DAILY_WEEK = (dt.date(2025, 1, 13), dt.date(2025, 1, 17))  # a week every exchange trades in full
#: Airflow's cost per mapped task under the real scheduler on the benchmark machine (300 trivial
#: mapped tasks took 64-92 s there), used only for the labelled estimate.
AIRFLOW_TASKS_PER_SECOND_ESTIMATE = 4.0
BENCH_TABLES = ("ib_pacing_ledger", "collection_logs", "bar_revisions", "no_data_sessions", "market_data")


def run(results: dict[str, Any]) -> dict[str, Any]:
    """Measure everything above; returns the figures (also stored as ``results["backfill"]``)."""
    from ibkr_market_data_dev import local_env
    from ibkr_market_data_dev.simulated_ib import simulator_config
    from tws_simulator.testing import SimulatorThread

    local_env.configure_airflow()
    started = time.monotonic()
    url = local_postgres.create_database(local_postgres.server_url())
    figures: dict[str, Any] = {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "latency_ms": LATENCY_MS,
        "workers": WORKERS,
    }
    try:
        schema.upgrade(url)
        with SimulatorThread(simulator_config(port=0)) as simulator, _environment(url, simulator):
            _load_universe(url)
            load_before = os.getloadavg()[0]
            figures["bulk_write"] = measure_bulk_writes(url, simulator)
            # Other work on this 2-CPU machine moves these figures a lot: report it beside them.
            figures["bulk_write"]["load_average_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
            simulator.faults.set(None, latency_ms=LATENCY_MS)
            _empty(url)
            figures["backfill_year"] = measure_backfill_year(url, simulator)
            _empty(url)
            figures["one_run_per_date"] = measure_daily_path(url, simulator, figures["backfill_year"])
            figures["violations"] = len(simulator.violations())
    finally:
        local_postgres.drop_database(url)
    figures["seconds"] = round(time.monotonic() - started, 1)
    results["backfill"] = figures
    return figures


# -- setup --------------------------------------------------------------------------------------


@contextmanager
def _environment(url: str, simulator: Any) -> Iterator[None]:
    """Point ``market_data_db`` and ``ibkr_default`` at the benchmark's database and simulator."""
    wanted = {
        "AIRFLOW_CONN_MARKET_DATA_DB": url,
        "AIRFLOW_CONN_IBKR_DEFAULT": (
            f"ibkr://{simulator.host}:{simulator.port}?client_id=1&client_id_range=32&request_timeout=60"
        ),
    }
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _load_universe(url: str) -> None:
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.symbols import load_symbols

    with psycopg.connect(url) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook)
    log.info("Backfill bench: %d symbols loaded, %d unresolved", report.loaded, len(report.unresolved))


def _empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(BENCH_TABLES)} RESTART IDENTITY")
        conn.execute("UPDATE symbols SET first_available_date = NULL")


def _symbol_ids(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {row.symbol: row.id for row in repository.select_symbols(conn)}


def _in_threads(work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """Run ``work`` over ``items`` on ``WORKERS`` threads, each with the event loop ib_insync needs."""

    def with_loop() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())

    with ThreadPoolExecutor(WORKERS, initializer=with_loop) as pool:
        return list(pool.map(work, items))


# -- bulk writes --------------------------------------------------------------------------------


def _year_of_bars(simulator: Any, symbols: Sequence[str]) -> dict[str, list[Bar]]:
    return {
        symbol: [stored_bar(b) for b in simulator.model.daily_bars(symbol, YEAR_START, YEAR_END)]
        for symbol in symbols
    }


def _timed_writes(
    url: str, bars_by_id: dict[int, list[Bar]], write: Callable[[Any, int, list[Bar]], object]
) -> float:
    """Write every symbol's bars into an empty ``market_data``, a commit per symbol; return bars/s."""
    _empty(url)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for symbol_id, bars in bars_by_id.items():
            write(conn, symbol_id, bars)
            conn.commit()
        elapsed = time.perf_counter() - started
    return sum(len(bars) for bars in bars_by_id.values()) / elapsed


def _insert_row_by_row(conn: Any, symbol_id: int, bars: list[Bar]) -> None:
    with conn.cursor() as cursor:
        for bar in bars:
            cursor.execute(
                """
                INSERT INTO market_data (symbol_id, timeframe, timestamp, open, high, low, close, volume, wap,
                                         bar_count)
                VALUES (%s, '1day', %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    symbol_id,
                    bar.timestamp,
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.volume,
                    bar.wap,
                    bar.bar_count,
                ),
            )


def measure_bulk_writes(url: str, simulator: Any) -> dict[str, Any]:
    """Write a year of daily bars three ways (upsert, backfill COPY, row by row); return bars/s of each."""
    ids = _symbol_ids(url)
    bars = _year_of_bars(simulator, sorted(ids))
    bars_by_id = {ids[symbol]: symbol_bars for symbol, symbol_bars in bars.items() if symbol_bars}
    few = dict(list(bars_by_id.items())[:ROW_BY_ROW_SYMBOLS])
    run = RunContext("bench", "bulk")
    paths: dict[str, tuple[dict[int, list[Bar]], Callable[[Any, int, list[Bar]], object]]] = {
        "upsert_bars": (bars_by_id, lambda conn, sid, b: repository.upsert_bars(conn, sid, "1day", b)),
        "store_backfilled_bars": (
            bars_by_id,
            lambda conn, sid, b: repository.store_backfilled_bars(conn, sid, "1day", b, run),
        ),
        "row_by_row_insert": (few, _insert_row_by_row),
    }
    figures: dict[str, Any] = {
        "bars": sum(len(b) for b in bars_by_id.values()),
        "symbols": len(bars_by_id),
        "row_by_row_bars": sum(len(b) for b in few.values()),
    }
    for name, (batch, write) in paths.items():
        rates = [_timed_writes(url, batch, write) for _ in range(REPEATS)]
        figures[f"{name}_bars_per_s"] = round(statistics.median(rates))
        figures[f"{name}_repeats"] = [round(rate) for rate in rates]
        log.info("Backfill bench: %s median %.0f bars/s", name, statistics.median(rates))
    baseline = figures["row_by_row_insert_bars_per_s"]
    figures["upsert_bars_vs_row_by_row"] = round(figures["upsert_bars_bars_per_s"] / baseline, 1)
    figures["store_backfilled_bars_vs_row_by_row"] = round(
        figures["store_backfilled_bars_bars_per_s"] / baseline, 1
    )
    figures["goal_bars_per_s"] = 50_000
    # The goal is on the backfill's own write path.
    figures["meets_goal"] = figures["store_backfilled_bars_bars_per_s"] >= figures["goal_bars_per_s"]
    return figures


# -- a year through the backfill ----------------------------------------------------------------


def _count_bars(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM market_data").fetchone()
    return int(row[0]) if row else 0


def measure_backfill_year(url: str, simulator: Any) -> dict[str, Any]:
    """Backfill the year for every symbol through the backfill's tasks; return requests, bars, seconds."""
    from ibkr_market_data.backfill_plan import BackfillRange
    from ibkr_market_data.settings import DAILY_EXCHANGES
    from ibkr_market_data.tasks import backfill

    run = RunContext("backfill_market_data", "bench-year")
    request = BackfillRange(YEAR_START, YEAR_END, DAILY_EXCHANGES)
    simulator.request_log.clear()
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        report, _ = backfill.gap_report(conn, request, dt.datetime.now(dt.UTC))
    gaps = backfill.find_gaps(request.to_dict(), run)
    planned = time.perf_counter()
    outcomes = _in_threads(lambda gap: backfill.collect_gap(gap, run), gaps)
    finished = time.perf_counter()
    totals = report.totals()
    bars = _count_bars(url)
    requests = len(simulator.request_log.historical())
    return {
        "range": f"{YEAR_START.isoformat()}..{YEAR_END.isoformat()}",
        "symbols": totals["symbols"],
        "symbols_with_gaps": totals["symbols_with_gaps"],
        "missing_sessions": totals["missing"],
        "contiguous_gaps": totals["runs"],
        "planned_requests": totals["requests"],
        "historical_requests_sent": requests,
        "head_timestamp_requests_sent": len(simulator.request_log.head_timestamps()),
        "requests_per_gap": round(requests / totals["runs"], 3) if totals["runs"] else None,
        "no_data_sessions": sum(int(outcome["no_data_sessions"]) for group in outcomes for outcome in group),
        "bars_written": bars,
        "plan_seconds": round(planned - started, 2),
        "wall_seconds": round(finished - started, 2),
        "bars_written_per_s": round(bars / (finished - started)),
        "estimated_airflow_task_seconds": round(len(gaps) / AIRFLOW_TASKS_PER_SECOND_ESTIMATE),
    }


# -- one run per date, scaled -------------------------------------------------------------------


def _year_runs_and_requests(url: str) -> tuple[int, int]:
    """Trading dates in the year (one daily run each) and daily requests (one per symbol and session)."""
    from ibkr_market_data.settings import DAILY_EXCHANGES

    with psycopg.connect(url) as conn:
        rows = repository.select_symbols(conn)
    sessions = {
        exchange: calendars.sessions_between(exchange, YEAR_START, YEAR_END) for exchange in DAILY_EXCHANGES
    }
    dates = set().union(*map(set, sessions.values()))
    requests = sum(len(sessions.get(row.primary_exchange) or []) for row in rows)
    return len(dates), requests


def _collect_daily(target: dict[str, object], run: RunContext) -> dict[str, object]:
    from ibkr_market_data.tasks import daily

    return daily.collect(target, run)


def measure_daily_path(url: str, simulator: Any, backfill_year: dict[str, Any]) -> dict[str, Any]:
    """Run the daily path over ``DAILY_WEEK`` and scale its time and requests to the whole year."""
    from ibkr_market_data.tasks import daily

    sessions = calendars.sessions_between("NASDAQ", *DAILY_WEEK)
    simulator.request_log.clear()
    started = time.perf_counter()
    for session in sessions:
        run = RunContext("daily_market_data", f"bench-{session.isoformat()}")
        targets = daily.plan(session.isoformat(), {}, run, now=dt.datetime.now(dt.UTC))
        _in_threads(partial(_collect_daily, run=run), targets)
    elapsed = time.perf_counter() - started
    requests = len(simulator.request_log.historical())
    bars = _count_bars(url)
    year_runs, year_requests = _year_runs_and_requests(url)
    scale = year_requests / requests if requests else 0.0
    scaled_seconds = elapsed * scale
    return {
        "measured_dates": f"{sessions[0].isoformat()}..{sessions[-1].isoformat()} ({len(sessions)} runs)",
        "requests_sent": requests,
        "bars_written": bars,
        "wall_seconds": round(elapsed, 2),
        "bars_written_per_s": round(bars / elapsed),
        "scaled_to_year": {
            "label": "scaled",
            "runs": year_runs,
            "requests": year_requests,
            "wall_seconds": round(scaled_seconds),
            "factor": round(scale, 1),
            "estimated_airflow_task_seconds": round(year_requests / AIRFLOW_TASKS_PER_SECOND_ESTIMATE),
        },
        "backfill_speedup_scaled": round(scaled_seconds / backfill_year["wall_seconds"], 1)
        if backfill_year.get("wall_seconds")
        else None,
        "request_ratio_scaled": round(year_requests / backfill_year["historical_requests_sent"], 1)
        if backfill_year.get("historical_requests_sent")
        else None,
    }


if __name__ == "__main__":
    import json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run({}), indent=2, default=str))
