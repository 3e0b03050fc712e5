"""
### Backfill missing daily bars from Interactive Brokers

Fills every (symbol, session) pair missing from `market_data` between `start_date` and
`end_date`, reading each exchange's trading calendar: weekends and that exchange's holidays are
never missing.

**validate** (dates, exchanges, symbols; nothing is sent on a bad param) → **find_gaps** (logs
the gap report: missing sessions, contiguous runs, the requests to send) → **collect_gap** (one
mapped task per symbol with gaps, in the `ibkr` pool: one `N D` request per run of missing
sessions, neighbouring runs sharing a request when one window of at most 365 days covers them) →
**summary**.

Sessions IB has no bar for (before a listing, or no trades) are recorded in `no_data_sessions`
and never asked for again; a symbol's first available date comes from IB's head timestamp.
Stored bars a request returns again are compared: a changed bar is replaced and logged in
`bar_revisions`. `dry_run` logs the report and the requests and sends nothing. Every symbol's
outcome is a row in `collection_logs`. From a shell: `make backfill FROM=2025-01-01 TO=2025-12-31`.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.settings import DAILY_EXCHANGES, IBKR_POOL
from ibkr_market_data.tasks.common import failing_without_retry, run_context


@dag(
    dag_id="backfill_market_data",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["market-data", "ibkr", "backfill"],
    default_args={
        "owner": "market-data",
        "retries": 3,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
    },
    params={
        "start_date": Param(
            type="string",
            format="date",
            title="Start date",
            description="First date to fill (YYYY-MM-DD), inclusive.",
        ),
        "end_date": Param(
            type="string",
            format="date",
            title="End date",
            description="Last date to fill (YYYY-MM-DD), inclusive; not in the future.",
        ),
        "exchanges": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(DAILY_EXCHANGES)},
            title="Exchanges",
            description="Listing exchanges to fill; empty for all.",
        ),
        "symbols": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Symbols",
            description="Only these symbols; empty for all active ones.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Log the gap report and the requests only; send nothing, write nothing.",
        ),
    },
)
def backfill_market_data():
    @task(retries=0)
    def validate() -> dict:
        from ibkr_market_data.tasks import backfill

        return backfill.validate(get_current_context()["params"])

    @task(retries=0)
    def find_gaps(request: dict) -> list[dict]:
        from ibkr_market_data.tasks import backfill

        return backfill.find_gaps(request, run_context())

    @task(pool=IBKR_POOL, map_index_template="{{ symbol }}")
    def collect_gap(gap: dict) -> dict:
        from ibkr_market_data.tasks import backfill

        get_current_context()["symbol"] = gap["symbol"]  # type: ignore[typeddict-unknown-key]
        with failing_without_retry():
            return backfill.collect_gap(gap, run_context())

    # The alert hangs on summary, not on the DAG: Airflow builds a DAG callback's context by
    # validating the params, and this DAG's required dates fail that in dag.test().
    @task(trigger_rule="all_done", retries=0, on_failure_callback=MarketDataFailureNotifier())
    def summary(request: dict, gaps: list[dict]) -> dict:
        from ibkr_market_data.tasks import backfill

        with failing_without_retry():
            return backfill.summarize(request, gaps, run_context())

    request = validate()
    gaps = find_gaps(request)
    collect_gap.expand(gap=gaps) >> summary(request, gaps)


dag_object = backfill_market_data()

if __name__ == "__main__":
    dag_object.test()
