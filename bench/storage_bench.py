"""Storage benchmark: a year of 1-minute bars in ``market_data``, partitioned (0007) beside one table (0006).

``run()`` measures writes, reads and size on both layouts; how each is measured and how the year
is loaded: docs/benchmarks.md#storage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg

from bench import figures as goal_figures
from ibkr_market_data import calendars, repository, schema
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext
from ibkr_market_data_dev import local_postgres

log = logging.getLogger(__name__)

#: Symbols loaded: the universe's 320, 31.2 million bars per layout, ~7 minutes per layout on this
#: 2-CPU machine (``--symbols`` scales it down). Per-symbol figures (a symbol-day, a symbol-year)
#: depend on the other symbols only through index depth; sizes scale with the row count.
SYMBOLS = 320
YEAR = 2025
EXCHANGE = "NASDAQ"
BARS_PER_SESSION = 390
#: Bars start at 14:30 UTC (09:30 New York in winter) every session: the date is what matters here.
FIRST_BAR = dt.time(14, 30)
WRITE_REPEATS = 3
DAY_SAMPLES = 20
YEAR_SAMPLES = 5
READ_REPEATS = 5
LOAD_WORKERS = 2
LOAD_SESSIONS_PER_STATEMENT = 5
LAYOUTS = {"unpartitioned": "0006", "partitioned": "head"}
RUN = RunContext("storage_bench", "bench")
#: Bars are written as a NASDAQ symbol's are: their sessions named in New York time.
TIME_ZONE = "America/New_York"
#: The writers measured, each on sessions of its own. The floor is held to the product's commit shape
#: and durability (one commit per symbol-session, ``IBKR_SYNCHRONOUS_BAR_COMMITS``); the last row
#: shows what waiting for the disk at each commit costs the same COPY.
WRITERS = (
    "store_backfilled_bars",
    "upsert_bars",
    FLOOR := "plain COPY (the floor)",
    SYNCHRONOUS_FLOOR := "plain COPY, each commit waiting for the disk",
)
#: Issue 24's goal for the daily upsert and the backfill path, in bars per second.
WRITE_GOAL = 100_000

_READ_BARS = """
    SELECT timestamp, open, high, low, close, volume, wap, bar_count FROM market_data
    WHERE symbol_id = %s AND timeframe = '1min' AND timestamp >= %s AND timestamp < %s
    ORDER BY timestamp
"""


def run(symbols: int = SYMBOLS) -> dict[str, Any]:
    """Measure both layouts; returns the figures, each beside the baseline with their ratio."""
    started = time.monotonic()
    sessions = calendars.sessions_between(EXCHANGE, dt.date(YEAR, 1, 1), dt.date(YEAR, 12, 31))
    fresh_sessions = calendars.sessions_between(EXCHANGE, dt.date(YEAR + 1, 1, 1), dt.date(YEAR + 1, 1, 31))
    load_before = os.getloadavg()[0]
    measured: dict[str, dict[str, Any]] = {}
    for layout, revision in LAYOUTS.items():
        url = local_postgres.create_database(local_postgres.server_url())
        try:
            schema.upgrade(url, revision)
            load = _load(url, symbols, sessions)
            log.info("Storage bench, %s: %s", layout, load)
            measured[layout] = {
                "load": load,
                "writes": _measure_writes(url, symbols, fresh_sessions[: len(WRITERS) * WRITE_REPEATS]),
                "reads": _measure_reads(url, symbols, sessions),
                "size": _sizes(url),
            }
        finally:
            repository.forget_known_partitions()
            local_postgres.drop_database(url)
    figures = _compare(measured, symbols, sessions)
    figures["load_average_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


# -- loading ------------------------------------------------------------------------------------


def _load(url: str, symbols: int, sessions: Sequence[dt.date]) -> dict[str, Any]:
    """Load the year of bars, heap first then keys; return the rows and the seconds each phase took."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO symbols (symbol, exchange, primary_exchange, currency, active, con_id)
            SELECT 'SYM' || n, 'SMART', %s, 'USD', TRUE, n FROM generate_series(1, %s) n
            """,
            (EXCHANGE, symbols),
        )
        # 50 price paths of a session; symbol n follows path n % 50. low < open, close <= high.
        conn.execute(
            """
            CREATE UNLOGGED TABLE bench_bar_template AS
            SELECT path, time '14:30' + minute * interval '1 minute' AS time_of_day,
                   price AS open, price + 0.05 AS high, price - 0.05 AS low, price + 0.01 AS close,
                   100 + (path * minute) % 900 AS volume, price AS wap, 1 + minute % 50 AS bar_count
            FROM generate_series(0, 49) path, generate_series(0, 389) minute,
                 LATERAL (SELECT (20 + path * 3 + minute * 0.01)::numeric(20,8) AS price) p
            """
        )
        repository.ensure_partitions(
            conn,
            "1min",
            dt.datetime.combine(sessions[0], FIRST_BAR),
            dt.datetime.combine(sessions[-1], FIRST_BAR),
        )
        definitions = _definitions(conn)
        recreate_keys = _drop_keys(conn)

    def load_sessions(chunk: Sequence[dt.date]) -> int:
        with psycopg.connect(url) as conn:
            cursor = conn.execute(
                """
                INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume,
                                         wap, bar_count)
                SELECT s.id, d + t.time_of_day, '1min', t.open, t.high, t.low, t.close, t.volume, t.wap,
                       t.bar_count
                FROM unnest(%s::date[]) d CROSS JOIN symbols s
                JOIN bench_bar_template t ON t.path = s.id %% 50
                """,
                (list(chunk),),
            )
            return cursor.rowcount

    started = time.perf_counter()
    chunks = [
        sessions[i : i + LOAD_SESSIONS_PER_STATEMENT]
        for i in range(0, len(sessions), LOAD_SESSIONS_PER_STATEMENT)
    ]
    with ThreadPoolExecutor(LOAD_WORKERS) as pool:
        rows = sum(pool.map(load_sessions, chunks))
    heap_seconds = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        for statement in recreate_keys:
            conn.execute(statement)
        keys_seconds = time.perf_counter() - started
        if _definitions(conn) != definitions:
            raise RuntimeError(f"market_data's keys and indexes differ after the load: {_definitions(conn)}")
        conn.execute("DROP TABLE bench_bar_template")
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        vacuum_seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "heap_seconds": round(heap_seconds, 1),
        "heap_rows_per_s": round(rows / heap_seconds),
        "keys_and_index_seconds": round(keys_seconds, 1),
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
    }


def _drop_keys(conn: psycopg.Connection) -> list[str]:
    """Drop ``market_data``'s primary and unique keys and its other indexes.

    :return: the statements that recreate them.
    """
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'market_data'::regclass AND contype IN ('p', 'u') ORDER BY conname"
    ).fetchall()
    indexes = conn.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
        WHERE i.indrelid = 'market_data'::regclass
          AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """
    ).fetchall()
    for name, _ in constraints:
        conn.execute(f"ALTER TABLE market_data DROP CONSTRAINT {name}")
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    # A partitioned table's index is defined "ON ONLY" the parent: recreated so, it would never be
    # built on the partitions.
    return [
        f"ALTER TABLE market_data ADD CONSTRAINT {name} {definition}" for name, definition in constraints
    ] + [definition.replace(" ON ONLY ", " ON ", 1) for _, definition in indexes]


def _definitions(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Return ``market_data``'s constraints and indexes (definition, validity) and its partitions' indexes."""
    rows = conn.execute(
        """
        SELECT 'constraint ' || conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = 'market_data'::regclass
        UNION ALL
        SELECT 'index ' || indexrelid::regclass::text,
               pg_get_indexdef(indexrelid) || CASE WHEN indisvalid THEN '' ELSE ' (invalid)' END
        FROM pg_index WHERE indrelid = 'market_data'::regclass
        UNION ALL
        SELECT 'index of a partition ' || c.relname,
               pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
        FROM pg_partition_tree('market_data') t
        JOIN pg_index i ON i.indrelid = t.relid JOIN pg_class c ON c.oid = i.indexrelid
        WHERE t.isleaf
        ORDER BY 1
        """
    ).fetchall()
    return [(name, definition) for name, definition in rows]


# -- writes -------------------------------------------------------------------------------------


def _session_bars(session: dt.date) -> list[Bar]:
    start = dt.datetime.combine(session, FIRST_BAR)
    bars = []
    for minute in range(BARS_PER_SESSION):
        price = Decimal("50") + Decimal(minute) / 100
        bars.append(
            Bar(
                timestamp=start + dt.timedelta(minutes=minute),
                open=price,
                high=price + Decimal("0.05"),
                low=price - Decimal("0.05"),
                close=price + Decimal("0.01"),
                volume=100 + minute,
                wap=price,
                bar_count=1 + minute % 50,
            )
        )
    return bars


def _timed_session(
    url: str, symbol_ids: Sequence[int], bars: list[Bar], write: Callable[[Any, int, list[Bar]], Any]
) -> tuple[float, int, int]:
    """Write ``bars`` for every symbol, one commit each, as an attempt writes a symbol-session.

    :return: bars per second, and the inserted and revised totals.
    """
    inserted = revised = 0
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for symbol_id in symbol_ids:
            result = write(conn, symbol_id, bars)
            conn.commit()
            inserted += result.inserted
            revised += result.revised
        elapsed = time.perf_counter() - started
    return len(bars) * len(symbol_ids) / elapsed, inserted, revised


def _measure_writes(url: str, symbols: int, fresh_sessions: Sequence[dt.date]) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        symbol_ids = [row[0] for row in conn.execute("SELECT id FROM symbols ORDER BY id").fetchall()]
        started = time.perf_counter()
        created = repository.ensure_partitions(
            conn,
            "1min",
            dt.datetime.combine(fresh_sessions[0], FIRST_BAR),
            dt.datetime.combine(fresh_sessions[-1], FIRST_BAR),
        )
        conn.commit()
        partition_ms = (time.perf_counter() - started) * 1000

    # The product's calls, as the daily run and the backfill make them (with a run and the zone).
    writers: dict[str, Callable[[Any, int, list[Bar]], Any]] = {
        "store_backfilled_bars": lambda conn, symbol_id, bars: repository.store_backfilled_bars(
            conn, symbol_id, "1min", bars, RUN, TIME_ZONE
        ),
        "upsert_bars": lambda conn, symbol_id, bars: repository.upsert_bars(
            conn, symbol_id, "1min", bars, RUN, TIME_ZONE
        ),
        FLOOR: lambda conn, symbol_id, bars: _plain_copy(
            conn, symbol_id, bars, repository.synchronous_bar_commits()
        ),
        SYNCHRONOUS_FLOOR: lambda conn, symbol_id, bars: _plain_copy(conn, symbol_id, bars, True),
    }
    rates: dict[str, list[float]] = {}
    verified: dict[str, list[bool]] = {}
    unexpected: list[str] = []
    for repeat in range(WRITE_REPEATS):
        for offset, name in enumerate(WRITERS):
            bars = _session_bars(fresh_sessions[len(WRITERS) * repeat + offset])
            expected = len(bars) * len(symbol_ids)
            kinds = [("new session", (expected, 0))]
            if name not in (FLOOR, SYNCHRONOUS_FLOOR):  # plain COPY cannot write a stored bar again
                kinds.append(("unchanged re-write", (0, 0)))
            for kind, counts in kinds:
                rate, inserted, revised = _timed_session(url, symbol_ids, bars, writers[name])
                rates.setdefault(f"{name}, {kind}", []).append(rate)
                verified.setdefault(f"{name}, {kind}", []).append((inserted, revised) == counts)
                if (inserted, revised) != counts:
                    unexpected.append(
                        f"{name} {kind}: {inserted} inserted, {revised} revised, expected {counts}"
                    )
    return {
        "bars_per_write": BARS_PER_SESSION,
        "writes": len(symbol_ids),
        "month_partitions_created": len(created),
        "month_partition_ms": round(partition_ms, 1),
        "synchronous_bar_commits": repository.synchronous_bar_commits(),
        "bars_per_s": {name: round(statistics.median(values)) for name, values in rates.items()},
        "repeats": {name: [round(value) for value in values] for name, values in rates.items()},
        "verified": verified,
        "unexpected": unexpected,
    }


class _Copied(NamedTuple):
    inserted: int
    revised: int = 0


def _plain_copy(conn: Any, symbol_id: int, bars: list[Bar], synchronous: bool) -> _Copied:
    """COPY ``bars`` into ``market_data`` with nothing else: no lock, no staging, no comparison, no log.

    The rows are encoded as the product's COPY encodes them; ``synchronous`` False lets the commit
    not wait for the disk, as the product's bar writes do by default.
    """
    with conn.cursor() as cursor:
        if not synchronous:
            cursor.execute("SET LOCAL synchronous_commit = off")
        with cursor.copy(
            "COPY market_data (symbol_id, timeframe, timestamp, open, high, low, close, volume, wap,"
            " bar_count) FROM STDIN"
        ) as copy:
            for bar in bars:
                copy.write_row(
                    (symbol_id, "1min", bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume)
                    + (bar.wap, bar.bar_count)
                )
        return _Copied(cursor.rowcount)


# -- reads --------------------------------------------------------------------------------------


def _timed_reads(
    conn: psycopg.Connection, reads: Sequence[tuple[int, dt.datetime, dt.datetime]]
) -> dict[str, Any]:
    """Time ``reads``, each warmed once then run ``READ_REPEATS`` times; return client and server medians."""
    client, server, rows = [], [], 0
    for read in reads:
        rows = len(conn.execute(_READ_BARS, read).fetchall())  # warm-up
        for _ in range(READ_REPEATS):
            started = time.perf_counter()
            fetched = conn.execute(_READ_BARS, read).fetchall()
            client.append((time.perf_counter() - started) * 1000)
            assert len(fetched) == rows
            [[plan]] = conn.execute(
                "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + _READ_BARS, read
            ).fetchall()
            server.append(plan[0]["Execution Time"])
    return {
        "rows": rows,
        "client_ms": round(statistics.median(client), 2),
        "server_ms": round(statistics.median(server), 2),
    }


def _measure_reads(url: str, symbols: int, sessions: Sequence[dt.date]) -> dict[str, Any]:
    day_reads = []
    for i in range(DAY_SAMPLES):
        symbol_id = 1 + (i * 37) % symbols
        session = sessions[(i * 53) % len(sessions)]
        start = dt.datetime.combine(session, dt.time())
        day_reads.append((symbol_id, start, start + dt.timedelta(days=1)))
    year_reads = [
        (1 + (i * 61) % symbols, dt.datetime(YEAR, 1, 1), dt.datetime(YEAR + 1, 1, 1))
        for i in range(YEAR_SAMPLES)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        return {"symbol_day": _timed_reads(conn, day_reads), "symbol_year": _timed_reads(conn, year_reads)}


# -- size ---------------------------------------------------------------------------------------


def _sizes(url: str) -> dict[str, float]:
    """Return the MiB of ``market_data``'s tables and indexes, partitions summed (a plain table: itself)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            WITH relations AS (
                SELECT relid FROM pg_partition_tree('market_data') WHERE isleaf
                UNION ALL
                SELECT 'market_data'::regclass WHERE NOT EXISTS (SELECT FROM pg_partition_tree('market_data'))
            )
            SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)), count(*) FROM relations
            """
        ).fetchone()
    assert row is not None  # an aggregate returns its one row
    table, indexes, relations = int(row[0]), int(row[1]), int(row[2])
    mib = 1024 * 1024
    return {
        "table_mib": round(table / mib, 1),
        "indexes_mib": round(indexes / mib, 1),
        "total_mib": round((table + indexes) / mib, 1),
        "tables": relations,
    }


# -- the comparison -----------------------------------------------------------------------------


def _compare(
    measured: dict[str, dict[str, Any]], symbols: int, sessions: Sequence[dt.date]
) -> dict[str, Any]:
    partitioned, baseline = measured["partitioned"], measured["unpartitioned"]

    def row(figure: str, *path: str) -> dict[str, Any]:
        """Return ``figure`` in both layouts, found at ``path`` in each one's figures, and their ratio."""
        new, old = _at(partitioned, path), _at(baseline, path)
        return {
            "figure": figure,
            "partitioned": new,
            "unpartitioned (baseline)": old,
            "partitioned / unpartitioned": round(new / old, 2) if old else None,
        }

    writes = [
        row(f"{name}: bars/s", "writes", "bars_per_s", name) for name in partitioned["writes"]["bars_per_s"]
    ]
    reads = [
        row(
            f"one symbol-{span}: {where} ms ({partitioned['reads'][key]['rows']:,} rows)",
            "reads",
            key,
            f"{where}_ms",
        )
        for span, key in (("day", "symbol_day"), ("year", "symbol_year"))
        for where in ("client", "server")
    ]
    sizes = [
        row(f"{label}, MiB", "size", key)
        for label, key in (("table", "table_mib"), ("indexes", "indexes_mib"), ("total", "total_mib"))
    ]
    loads = [
        row("bulk load, heap: rows/s", "load", "heap_rows_per_s"),
        row("bulk load, keys and index: s", "load", "keys_and_index_seconds"),
        row("VACUUM ANALYZE after the load: s", "load", "vacuum_analyze_seconds"),
    ]
    repeats, verified = partitioned["writes"]["repeats"], partitioned["writes"]["verified"]
    floor = goal_figures.spread(repeats[f"{FLOOR}, new session"], places=0)
    against_floor = [
        {
            "figure": f"{name}: bars/s",
            "median": goal_figures.spread(values, places=0)["median"],
            "min–max": f"{min(values):,.0f}–{max(values):,.0f}",
            "plain COPY into the same table, same commits": floor["median"],
            "share of the floor": round(statistics.median(values) / floor["median"], 2),
            f"goal ≥ {WRITE_GOAL:,}": goal_figures.verdict_text(
                goal_figures.verdict(values, WRITE_GOAL, verified[name], higher_is_better=True), " bars/s"
            ),
        }
        for name, values in repeats.items()
        if not name.startswith("plain COPY")
    ]
    return {
        "data": (
            f"{partitioned['load']['rows']:,} rows in each layout: {symbols} symbols x {len(sessions)} "
            f"{EXCHANGE} sessions of {YEAR} x {BARS_PER_SESSION} 1-minute bars "
            "(a year of the whole universe of 320 is "
            f"{320 * len(sessions) * BARS_PER_SESSION:,} rows)"
        ),
        "partitions": (
            f"partitioned: {partitioned['size']['tables']} tables (a month of 1-minute bars is "
            f"~{partitioned['load']['rows'] // 12:,} rows here); unpartitioned: 1"
        ),
        "writes_measured": (
            f"one session of {BARS_PER_SESSION} bars for each of {partitioned['writes']['writes']} symbols, "
            "one commit per symbol-session (an attempt's shape), each writer called as the daily run and "
            f"the backfill call it; median of {WRITE_REPEATS} repeats, each on sessions of its own; "
            "bar commits wait for the disk: "
            f"{'yes' if partitioned['writes']['synchronous_bar_commits'] else 'no (the default)'}"
        ),
        "unexpected write counts": [
            f"{layout}: {problem}" for layout, m in measured.items() for problem in m["writes"]["unexpected"]
        ],
        "reads_measured": (
            f"median of {DAY_SAMPLES} symbol-days and {YEAR_SAMPLES} symbol-years x {READ_REPEATS} runs "
            "each, warm cache; client: SELECT of the rows into Python; server: EXPLAIN ANALYZE execution time"
        ),
        "month_partition_created_ms": partitioned["writes"]["month_partition_ms"],
        "writes": writes,
        "writes against the COPY floor (partitioned, a year of data stored)": against_floor,
        "reads": reads,
        "size": sizes,
        "load": loads,
        "repeats": {layout: m["writes"]["repeats"] for layout, m in measured.items()},
    }


def _at(measurements: dict[str, Any], path: Sequence[str]) -> Any:
    value: Any = measurements
    for key in path:
        value = value[key]
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(options.symbols), indent=2, default=str))
