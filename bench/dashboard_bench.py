"""Dashboard benchmark: its pages and JSON on a year of data for 5,000 symbols.

``run(results)`` fills a throwaway market-data database and times the dashboard app's endpoints
in-process. How, and how to run it alone: docs/benchmarks.md#dashboard.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import time
from typing import Any

import psycopg

from ibkr_market_data import coverage, schema
from ibkr_market_data_dev import local_postgres

log = logging.getLogger(__name__)

SYMBOLS = 5_000
YEAR = 2025
REPEATS = 5
#: Share of each listing exchange in the generated universe.
EXCHANGES = {"NASDAQ": 0.4, "NYSE": 0.3, "ASX": 0.2, "ARCA": 0.1}
FAILED_EVERY = 200  # one (symbol, session) in 200 fails once before its retry succeeds
NO_DATA_EVERY = 500  # one in 500 has no data from IB


def generate(conn: psycopg.Connection, symbols: int, year: int) -> dict[str, int]:
    """Write the synthetic year; returns the row counts."""
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    next_id = 0
    for exchange, share in EXCHANGES.items():
        count = int(symbols * share)
        conn.execute(
            """
            INSERT INTO symbols (symbol, exchange, primary_exchange, currency, con_id, active)
            SELECT %(exchange)s || '_' || n, CASE WHEN %(exchange)s = 'ASX' THEN 'ASX' ELSE 'SMART' END,
                   %(exchange)s, CASE WHEN %(exchange)s = 'ASX' THEN 'AUD' ELSE 'USD' END, %(first)s + n, TRUE
            FROM generate_series(1, %(count)s) n
            """,
            {"exchange": exchange, "count": count, "first": next_id},
        )
        next_id += count
        sessions = coverage.trading_dates([exchange], start, end)
        params = {
            "exchange": exchange,
            "sessions": sessions,
            "failed": FAILED_EVERY,
            "no_data": NO_DATA_EVERY,
        }
        # Bars, except the no-data (symbol, session) pairs.
        conn.execute(
            """
            INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume)
            SELECT s.id, d, '1day', 10, 11, 9, 10, 1000
            FROM symbols s CROSS JOIN unnest(%(sessions)s::date[]) d
            WHERE s.primary_exchange = %(exchange)s
              AND (s.id * 31 + (d - DATE '2000-01-01')) %% %(no_data)s <> 0
            """,
            params,
        )
        # One attempt per (symbol, session): try 1 fails for some, their try 2 completes.
        conn.execute(
            """
            INSERT INTO collection_logs (symbol_id, collection_type, timeframe, start_date, end_date, status,
                                         error_message, error_code, records_collected, started_at,
                                         completed_at, dag_id, run_id, try_number, requests_sent,
                                         request_seconds)
            SELECT s.id, 'historical', '1day', d, d, o.status, o.message, o.code,
                   CASE WHEN o.status = 'completed' THEN 1 ELSE 0 END,
                   d + interval '22 hours' + o.try * interval '1 minute',
                   d + interval '22 hours' + o.try * interval '1 minute' + interval '2 seconds',
                   'daily_market_data', 'scheduled__' || d::date, o.try, 1, 0.05 + random() * 0.2
            FROM symbols s CROSS JOIN unnest(%(sessions)s::date[]) d
            CROSS JOIN LATERAL (
                SELECT (s.id * 31 + (d - DATE '2000-01-01')) %% %(no_data)s = 0 AS no_data,
                       (s.id * 17 + (d - DATE '2000-01-01')) %% %(failed)s = 0 AS failed_once
            ) k
            CROSS JOIN LATERAL (
                SELECT * FROM (VALUES
                    (1, CASE WHEN k.no_data THEN 'no_data' WHEN k.failed_once THEN 'failed'
                             ELSE 'completed' END,
                     CASE WHEN k.no_data THEN 'HMDS query returned no data'
                          WHEN k.failed_once THEN 'Historical data request timed out' END,
                     CASE WHEN k.no_data THEN 162 END),
                    (2, 'completed', NULL, NULL)
                ) AS t(try, status, message, code)
                WHERE t.try = 1 OR (k.failed_once AND NOT k.no_data)
            ) o
            WHERE s.primary_exchange = %(exchange)s
            """,
            params,
        )
    conn.commit()
    from ibkr_market_data import repository

    runs = [row[0] for row in conn.execute("SELECT DISTINCT run_id FROM collection_logs")]
    for run_id in runs:
        repository.record_run_metrics(conn, "daily_market_data", run_id)
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load; index-only scans need it
    counts = {
        table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 (fixed names)
        for table in ("symbols", "market_data", "collection_logs", "run_metrics")
    }
    return counts


def timed(call: Any, repeats: int) -> dict[str, float]:
    """Call ``call`` once to warm up, then ``repeats`` times; return the median and the max in ms."""
    call()  # warm-up: first connection, calendars built, plans cached
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return {"median_ms": round(statistics.median(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1)}


def measure(url: str, year: int, repeats: int) -> dict[str, Any]:
    """Time the dashboard's pages and JSON endpoints over a year of data; return the timings by name."""
    from fastapi.testclient import TestClient

    from ibkr_market_data.dashboard.app import create_app

    app = create_app(connect=lambda: psycopg.connect(url), require_auth=False)
    client = TestClient(app)
    last = dt.date(year, 12, 31)
    whole = {"from": f"{year}-01-01", "to": f"{year}-12-31"}
    month = {"to": last.isoformat()}  # the default: the last 30 trading dates

    def get(path: str, params: dict[str, str] | None = None) -> Any:
        def call() -> None:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text[:500]

        return call

    figures = {
        "coverage JSON, 30 trading dates": timed(get("/api/coverage", month), repeats),
        "coverage JSON, a year": timed(get("/api/coverage", whole), repeats),
        "overview page, 30 trading dates": timed(get("/", month), repeats),
        "overview page, a year": timed(get("/", whole), repeats),
        "latest runs JSON": timed(get("/api/runs"), repeats),
        "failures JSON, a year": timed(get("/api/failures", whole), repeats),
        "symbol page (180 days)": timed(get("/symbols/NASDAQ_7"), repeats),
    }
    with psycopg.connect(url) as conn:
        plan = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT COUNT(*) FROM market_data WHERE timeframe = '1day' "
            "AND timestamp BETWEEN %s AND %s",
            (dt.datetime(year, 1, 1), dt.datetime(year, 12, 31)),
        ).fetchone()[0]
    figures["bars counted over a year (SQL only)"] = {"median_ms": round(plan[0]["Execution Time"], 1)}
    return figures


def run(
    results: dict[str, Any] | None = None, symbols: int = SYMBOLS, repeats: int = REPEATS
) -> dict[str, Any]:
    """Generate, measure, drop; put the figures into ``results['dashboard']`` and return them."""
    url = local_postgres.create_database(local_postgres.server_url())
    try:
        schema.upgrade(url)
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            counts = generate(conn, symbols, YEAR)
        generated = time.perf_counter() - started
        log.info("Generated %s in %.0f s", counts, generated)
        section = {
            "date": dt.date.today().isoformat(),
            "rows": counts,
            "generate_seconds": round(generated, 1),
            "repeats": repeats,
            "timings": measure(url, YEAR, repeats),
        }
    finally:
        local_postgres.drop_database(url)
    if results is not None:
        results["dashboard"] = section
    return section


def main() -> None:
    """Parse the command line, run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(json.dumps(run(symbols=args.symbols, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
