"""Charts benchmark: the dashboard's symbol page and candles JSON on a year of 1-minute bars.

``run()`` loads the year into a throwaway database and times the page in-process, each answer
checked. What is measured and how to run it: docs/benchmarks.md#charts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ibkr_market_data import calendars, repository, schema
from ibkr_market_data_dev import local_postgres

log = logging.getLogger(__name__)

SYMBOLS = 320
YEAR = 2025
EXCHANGE = "NASDAQ"
REPEATS = 5


def timed(call: Callable[[], dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Call ``call`` once to warm up, then ``repeats`` times; return the median, min and max in ms.

    ``call`` returns what it checked (candles, bars, bytes): kept with the timings.
    """
    checked = call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "min_ms": round(min(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        **checked,
    }


def measure(url: str, sessions: list[dt.date], repeats: int, charted: str) -> dict[str, Any]:
    """Time the page and candles JSON of symbol ``charted``; return the timings by name."""
    from fastapi.testclient import TestClient

    from ibkr_market_data.dashboard import candles
    from ibkr_market_data.dashboard.app import create_app
    from ibkr_market_data.repository.charts import _CANDLES, BUCKET_ORIGIN

    client = TestClient(create_app(connect=lambda: psycopg.connect(url), require_auth=False))
    year = {"from": sessions[0].isoformat(), "to": sessions[-1].isoformat()}
    bars_in_year = len(sessions) * 390

    def page(params: dict[str, str], bars: int) -> Callable[[], dict[str, Any]]:
        def call() -> dict[str, Any]:
            response = client.get(f"/symbols/{charted}", params=params)
            assert response.status_code == 200, response.text[:500]
            marker = "data-candles='"
            shown = int(response.text.split(marker, 1)[1].split("'", 1)[0])
            assert 0 < shown <= candles.MAX_CANDLES and f"data-bars='{bars}'" in response.text
            return {"candles": shown, "bars": bars, "page_kib": round(len(response.content) / 1024, 1)}

        return call

    def api(params: dict[str, str], bars: int) -> Callable[[], dict[str, Any]]:
        def call() -> dict[str, Any]:
            response = client.get(f"/api/symbols/{charted}/candles", params=params)
            assert response.status_code == 200, response.text[:500]
            chart = response.json()
            assert chart["bars"] == bars and 0 < chart["candles"] <= candles.MAX_CANDLES, chart["note"]
            return {
                "candles": chart["candles"],
                "bars": chart["bars"],
                "bucket": candles.duration(chart["bucket_seconds"]),
                "json_kib": round(len(response.content) / 1024, 1),
            }

        return call

    last = sessions[-1].isoformat()
    half_year = dt.timedelta(days=180)  # the page's default range
    figures = {
        "page, a year of 1-minute bars (timeframe=1min)": timed(
            page({**year, "timeframe": "1min"}, bars_in_year), repeats
        ),
        "candles JSON, a year of 1-minute bars": timed(
            api({**year, "timeframe": "1min"}, bars_in_year), repeats
        ),
        "page, 180 days to the last session (auto)": timed(
            page({"to": last}, 390 * len([day for day in sessions if day >= sessions[-1] - half_year])),
            repeats,
        ),
        "candles JSON, one session (a zoom: raw 1-minute bars)": timed(
            api({"session": last, "timeframe": "auto"}, 390), repeats
        ),
    }
    with psycopg.connect(url) as conn:
        symbol_id = conn.execute("SELECT id FROM symbols WHERE symbol = %s", (charted,)).fetchone()[0]
        span = candles.window(symbol_id, "1min", "America/New_York", sessions[0], sessions[-1])
        plan = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + _CANDLES,
            {
                "symbol_id": span.symbol_id,
                "timeframe": span.timeframe,
                "first": span.first,
                "stop": span.stop,
                "zone": span.zone,
                "width": dt.timedelta(days=1),
                "origin": BUCKET_ORIGIN,
            },
        ).fetchone()[0]
    figures["bucketing a year of 1-minute bars into days (SQL only)"] = {
        "median_ms": round(plan[0]["Execution Time"], 1)
    }
    return figures


def run(symbols: int = SYMBOLS, repeats: int = REPEATS) -> dict[str, Any]:
    """Load the year, measure, drop; return the figures."""
    from bench import storage_bench

    started = time.monotonic()
    sessions = calendars.sessions_between(EXCHANGE, dt.date(YEAR, 1, 1), dt.date(YEAR, 12, 31))
    url = local_postgres.create_database(local_postgres.server_url())
    try:
        schema.upgrade(url)
        load = storage_bench._load(url, symbols, sessions)
        log.info("Charts bench: loaded %s", load)
        charted = f"SYM{max(1, symbols // 2)}"  # one in the middle of the table
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE market_data")  # what autovacuum does after a bulk load
        figures = {
            "date": dt.date.today().isoformat(),
            "symbols": symbols,
            "rows": load["rows"],
            "bars_of_the_charted_symbol": len(sessions) * 390,
            "max_candles": _max_candles(),
            "repeats": repeats,
            "charted": charted,
            "timings": measure(url, sessions, repeats, charted),
        }
    finally:
        repository.forget_known_partitions()
        local_postgres.drop_database(url)
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def _max_candles() -> int:
    from ibkr_market_data.dashboard.candles import MAX_CANDLES

    return MAX_CANDLES


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
