"""
### Daily market data from Interactive Brokers

One run per trading date, 30 minutes after the last close among ASX and the US exchanges trading
that day. Each run collects every active symbol's daily bar for that session:

**resolve_date** → **plan** (active symbols minus those already stored: the dedupe check) →
**collect** (one mapped task per symbol, in the `ibkr` pool) → **summary**.

Trigger it by hand with a `date` (default: the latest completed trading date), a `dry_run` that
only logs what it would request, a `priority`, `exchanges` or `symbols` filter. A rerun of a date
requests nothing that is already stored. Every attempt is a row in `collection_logs`.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.settings import CLOSE_DELAY_MINUTES, DAILY_EXCHANGES, IBKR_POOL
from ibkr_market_data.tasks.common import failing_without_retry, run_context
from ibkr_market_data.timetables import ExchangeSessionTimetable


@dag(
    dag_id="daily_market_data",
    schedule=ExchangeSessionTimetable(exchanges=DAILY_EXCHANGES, delay_minutes=CLOSE_DELAY_MINUTES),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    on_failure_callback=MarketDataFailureNotifier(),
    tags=["market-data", "ibkr", "daily"],
    default_args={
        "owner": "market-data",
        "retries": 3,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
    },
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Trading date",
            description="Session to collect (YYYY-MM-DD). Empty: the latest completed trading date.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Plan and log the requests only; send nothing, write nothing.",
        ),
        "priority": Param(
            "all",
            enum=["all", "high", "low"],
            title="Priority",
            description="high: priority-1 symbols only; low: the rest.",
        ),
        "exchanges": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(DAILY_EXCHANGES)},
            title="Exchanges",
            description="Listing exchanges to collect; empty for all.",
        ),
        "symbols": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Symbols",
            description="Only these symbols; empty for all active ones.",
        ),
    },
)
def daily_market_data():
    @task(retries=0)
    def resolve_date() -> str:
        from ibkr_market_data.tasks import daily

        context = get_current_context()
        dag_run = context["dag_run"]
        return daily.resolve_date(
            context["params"], dag_run.run_type, dag_run.logical_date, dag_run.run_after
        )

    @task(retries=0)
    def plan(trading_date: str) -> list[dict]:
        from ibkr_market_data.tasks import daily

        return daily.plan(trading_date, get_current_context()["params"], run_context())

    @task(pool=IBKR_POOL, map_index_template="{{ symbol }}")
    def collect(target: dict) -> dict:
        from ibkr_market_data.tasks import daily

        get_current_context()["symbol"] = target["symbol"]  # type: ignore[typeddict-unknown-key]
        with failing_without_retry():
            return daily.collect(target, run_context())

    @task(trigger_rule="all_done", retries=0)
    def summary(trading_date: str, targets: list[dict]) -> dict:
        from ibkr_market_data.tasks import daily

        with failing_without_retry():
            return daily.summarize(trading_date, targets, get_current_context()["params"], run_context())

    trading_date = resolve_date()
    targets = plan(trading_date)
    collect.expand(target=targets) >> summary(trading_date, targets)


dag_object = daily_market_data()

if __name__ == "__main__":
    dag_object.test()
