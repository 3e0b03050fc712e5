"""Reads benchmark: the read API on a year of 1-minute bars; rows per second, peak memory against the table.

``run()`` builds a throwaway database at head, loads ``symbols`` x the NASDAQ sessions of ``YEAR``
x 390 1-minute bars the way the storage bench does (``storage_bench._load``: 31.2 million rows
for the universe's 320 symbols), and measures, each pass in a fresh Python process so that its
peak resident memory is its own:

* **iter_bars**: every bar of the year, all symbols, through ``reader.iter_bars`` (server-side
  cursor, ``DEFAULT_CHUNK_ROWS`` per chunk), each chunk counted then dropped: what a consumer of
  the whole table runs. The rows are checked against ``count(*)``.
* **the floor**: the same rows through a bare psycopg server-side cursor into tuples, no pandas:
  what the database and the driver cost, the baseline of the ratio.
* **read_bars**: ``READ_BARS_SYMBOLS`` symbols' year as one DataFrame: peak memory against the
  frame's own size.

Peak memory is the process's peak resident set (``ru_maxrss``) less its resident set after the
imports and the connection, before the read; the table's size is its heap and indexes, every
partition of ``1min`` summed. Medians of ``repeats`` passes with their min and max; one untimed
pass of the floor first warms the cache.

    PYTHONPATH=include:. .venv/bin/python -m bench.reads_bench [--symbols N] [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from ibkr_market_data import calendars, repository, schema
from ibkr_market_data_dev import local_postgres

log = logging.getLogger(__name__)

SYMBOLS = 320
YEAR = 2025
EXCHANGE = "NASDAQ"
REPEATS = 3
#: Symbols read as one DataFrame by ``read_bars`` (a year each: 97,500 rows per symbol).
READ_BARS_SYMBOLS = 20
MIB = 1024 * 1024


def run(symbols: int = SYMBOLS, repeats: int = REPEATS) -> dict[str, Any]:
    """Load the year and measure each pass ``repeats`` times; returns the figures."""
    from bench import storage_bench

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    sessions = calendars.sessions_between(EXCHANGE, dt.date(YEAR, 1, 1), dt.date(YEAR, 12, 31))
    url = local_postgres.create_database(local_postgres.server_url())
    try:
        schema.upgrade(url)
        load = storage_bench._load(url, symbols, sessions)
        log.info("Reads bench: loaded %s", load)
        table = _table_size(url)
        first, last = sessions[0].isoformat(), sessions[-1].isoformat()
        _measure(url, "floor", first, last, symbols)  # warms the cache, untimed
        passes: dict[str, list[dict[str, Any]]] = {"iter_bars": [], "floor": [], "read_bars": []}
        for repeat in range(repeats):
            for mode in passes:
                passes[mode].append(_measure(url, mode, first, last, symbols))
                log.info("Reads bench, repeat %d, %s: %s", repeat + 1, mode, passes[mode][-1])
    finally:
        repository.forget_known_partitions()
        local_postgres.drop_database(url)
    _check(passes, load["rows"], symbols)
    figures = _figures(
        passes, load["rows"], table, symbols, len(sessions), repeats, time.monotonic() - started
    )
    # The machine is shared: a high load average means slower figures, not a slower read API.
    figures["load_average_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    figures["machine"] = _machine()
    return figures


def _measure(url: str, mode: str, first: str, last: str, symbols: int) -> dict[str, Any]:
    """Run one pass in a fresh process; returns what it printed."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.reads_bench",
            "--pass",
            mode,
            "--url",
            url,
            "--from",
            first,
            "--to",
            last,
            "--symbols",
            str(symbols),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if completed.returncode != 0:
        raise RuntimeError(f"reads bench pass {mode} failed:\n{completed.stderr[-4000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _table_size(url: str) -> dict[str, float]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid))
            FROM pg_partition_tree('market_data_1min') WHERE isleaf
            """
        ).fetchone()
    assert row is not None  # an aggregate returns its one row
    return {"table_mib": round(int(row[0]) / MIB, 1), "indexes_mib": round(int(row[1]) / MIB, 1)}


def _check(passes: dict[str, list[dict[str, Any]]], rows: int, symbols: int) -> None:
    """Every pass read what it should: all the rows, or the read_bars symbols' share."""
    wanted = {
        "iter_bars": rows,
        "floor": rows,
        "read_bars": rows * min(READ_BARS_SYMBOLS, symbols) // symbols,
    }
    wrong = [
        f"{mode} read {measured['rows']:,} rows, expected {wanted[mode]:,}"
        for mode, measurements in passes.items()
        for measured in measurements
        if measured["rows"] != wanted[mode]
    ]
    if wrong:
        raise RuntimeError("; ".join(wrong))


def _median(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def _figures(
    passes: dict[str, list[dict[str, Any]]],
    rows: int,
    table: dict[str, float],
    symbols: int,
    sessions: int,
    repeats: int,
    seconds: float,
) -> dict[str, Any]:
    def rate(mode: str) -> dict[str, float]:
        return _median([m["rows"] / m["seconds"] for m in passes[mode]])

    def peak(mode: str) -> dict[str, float]:
        return _median([m["peak_mib"] for m in passes[mode]])

    table_mib = table["table_mib"] + table["indexes_mib"]
    iter_rate, floor_rate = rate("iter_bars"), rate("floor")
    read = passes["read_bars"]
    frame_mib = statistics.median(m["frame_mib"] for m in read)
    return {
        "data": (
            f"{rows:,} 1-minute bars: {symbols} symbols x {sessions} {EXCHANGE} sessions of {YEAR} x 390; "
            f"1min partitions {table['table_mib']:,} MiB heap + {table['indexes_mib']:,} MiB indexes"
        ),
        "measured": (
            f"median (min-max) of {repeats} passes, each in a fresh process after one untimed warm-up pass; "
            "peak memory: peak resident set less the resident set before the read"
        ),
        "reads": [
            {
                "pass": "iter_bars, every symbol's year (server-side cursor, chunks counted and dropped)",
                "rows": rows,
                "rows/s": iter_rate,
                "seconds": _median([m["seconds"] for m in passes["iter_bars"]]),
                "peak MiB": peak("iter_bars"),
                "largest chunk": max(m["largest_chunk"] for m in passes["iter_bars"]),
            },
            {
                "pass": "floor: the same rows as tuples through a bare psycopg named cursor, no pandas",
                "rows": rows,
                "rows/s": floor_rate,
                "seconds": _median([m["seconds"] for m in passes["floor"]]),
                "peak MiB": peak("floor"),
                "largest chunk": max(m["largest_chunk"] for m in passes["floor"]),
            },
            {
                "pass": f"read_bars, {min(READ_BARS_SYMBOLS, symbols)} symbols' year as one DataFrame",
                "rows": read[0]["rows"],
                "rows/s": rate("read_bars"),
                "seconds": _median([m["seconds"] for m in read]),
                "peak MiB": peak("read_bars"),
                "largest chunk": None,
            },
        ],
        "iter_bars_rows_per_s_vs_floor": round(iter_rate["median"] / floor_rate["median"], 2),
        "iter_bars_peak_mib_vs_table_mib": (
            f"{peak('iter_bars')['median']:,} MiB against {table_mib:,.1f} MiB of table and indexes "
            f"({peak('iter_bars')['median'] / table_mib:.1%})"
        ),
        "read_bars_peak_vs_frame": (
            f"{peak('read_bars')['median']:,} MiB peak for a {frame_mib:,.1f} MiB frame "
            f"({peak('read_bars')['median'] / frame_mib:.2f}x)"
        ),
        "seconds": round(seconds, 1),
    }


def _machine() -> str:
    """Return the machine measured on, kept with the figures (results.md names only the latest run's)."""
    from bench.run import machine_facts

    facts = machine_facts()
    return f"{facts['nproc']} CPUs ({facts['cpu']}), {facts['memory_gib']} GiB"


# -- one pass, in its own process -----------------------------------------------------------------


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / MIB


def _pass(mode: str, url: str, first: str, last: str, symbols: int) -> dict[str, Any]:
    import pandas  # noqa: F401  (imported before the baseline, as the read API imports it)
    import pyarrow  # noqa: F401

    from ibkr_market_data import reader

    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1").fetchone()
        baseline = _resident_mib()
        rows, largest, frame_mib = 0, 0, 0.0
        started = time.perf_counter()
        if mode == "iter_bars":
            for chunk in reader.iter_bars(None, "1min", first, last, conn=conn):
                rows += len(chunk)
                largest = max(largest, len(chunk))
                del chunk
        elif mode == "floor":
            with conn.transaction(), conn.cursor(name="floor", binary=True) as cursor:
                cursor.execute(
                    """
                    SELECT symbol_id, timestamp, open::float8, high::float8, low::float8, close::float8,
                           volume, wap::float8, bar_count
                    FROM market_data WHERE timeframe = '1min' AND timestamp >= %s AND timestamp < %s
                    ORDER BY symbol_id, timestamp
                    """,
                    (
                        dt.datetime.fromisoformat(first),
                        dt.datetime.fromisoformat(last) + dt.timedelta(days=1),
                    ),
                )
                while batch := cursor.fetchmany(reader.DEFAULT_CHUNK_ROWS):
                    rows += len(batch)
                    largest = max(largest, len(batch))
        else:
            names = [f"SYM{n}" for n in range(1, min(READ_BARS_SYMBOLS, symbols) + 1)]
            frame = reader.read_bars(names, "1min", first, last, conn=conn)
            rows = len(frame)
            frame_mib = (frame.memory_usage(deep=True).sum() + frame.index.memory_usage(deep=True)) / MIB
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "peak_mib": round(peak - baseline, 1),
        "baseline_mib": round(baseline, 1),
        "largest_chunk": largest,
        "frame_mib": round(frame_mib, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument(
        "--pass", dest="mode", choices=("iter_bars", "floor", "read_bars"), help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--from", dest="first", help=argparse.SUPPRESS)
    parser.add_argument("--to", dest="last", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.mode:
        print(json.dumps(_pass(options.mode, options.url, options.first, options.last, options.symbols)))
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        print(json.dumps(run(options.symbols, options.repeats), indent=2, default=str))
