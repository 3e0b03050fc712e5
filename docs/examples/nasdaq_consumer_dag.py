"""Example downstream DAG: runs when NASDAQ's daily bars of a session are all in, and reads them.

Scheduled on the asset `market_data/NASDAQ/1day`: the collector's daily and backfill runs emit an
event for it once every active NASDAQ symbol is collected for the run's sessions. The task reads
those sessions' bars through the read API. Copy it into your dags folder. See docs/assets.md.
"""

from __future__ import annotations

import datetime as dt
import logging

from airflow.sdk import dag, get_current_context, task

from ibkr_market_data.assets import market_data_asset

log = logging.getLogger(__name__)

NASDAQ_DAILY = market_data_asset("NASDAQ", "1day")


@dag(
    dag_id="nasdaq_daily_consumer",
    schedule=[NASDAQ_DAILY],
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    doc_md=__doc__,
    tags=["market-data", "example"],
    default_args={"owner": "market-data", "retries": 1},
)
def nasdaq_daily_consumer():
    """Read the NASDAQ sessions the triggering events name."""

    @task
    def read_new_sessions() -> dict[str, object]:
        from ibkr_market_data.reader import read_bars, read_coverage

        # Events queued while the DAG waited arrive together in one run: read every session they name.
        events = get_current_context()["triggering_asset_events"][NASDAQ_DAILY]
        sessions = sorted({day for event in events for day in event.extra["sessions"]})
        first, last = sessions[0], sessions[-1]
        coverage = read_coverage(None, "1day", first, last)
        symbols = sorted(set(coverage[coverage["exchange"] == "NASDAQ"].index.get_level_values("symbol")))
        bars = read_bars(symbols, "1day", first, last)
        log.info("Read %d NASDAQ daily bars of %d symbols for %s..%s", len(bars), len(symbols), first, last)
        return {
            "sessions": sessions,
            "symbols": symbols,
            "bars": len(bars),
            "last_closes": bars.groupby(level="symbol")["close"].last().to_dict(),
        }

    read_new_sessions()


dag_object = nasdaq_daily_consumer()

if __name__ == "__main__":
    dag_object.test()
