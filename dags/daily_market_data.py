"""
### Daily market data from Interactive Brokers

One run per trading date, 30 minutes after the last close among ASX and the US exchanges trading
that day. Each run collects every active symbol's daily bar for that session:

**resolve_date** → **plan** (active symbols minus those already stored: the dedupe check; the
groups go to `planned_groups`, and each mapped task is handed only its group's index) →
**collect** (mapped in the `ibkr` pool: one task per symbol, or per group of symbols collected
concurrently over one connection when the run has more than `IBKR_MAX_MAPPED_TASKS`) → **summary**
(counts per status, and the data-quality checks over what was collected: `data_quality_issues`).

Trigger it by hand with a `date` (default: the latest completed trading date, by the schedule's
close-plus-delay rule), a `dry_run` that only logs what it would request, a `priority`, `exchanges`
or `symbols` filter, and a `timeframe` (`configured`: daily bars for all, and the intraday ones of
`IBKR_INTRADAY_TIMEFRAMES` for the high-priority symbols; or one of `1day`, `1hour`, `5min`,
`1min` for every selected symbol). Intraday bars are stamped with their start in UTC; a session
counts as stored with every bar of its exchange's schedule. Each symbol is judged over its last `lookback_sessions` sessions: missing ones
are healed and stored ones re-fetched and compared in the one request it sends. A rerun of a date
requests nothing that is already stored. Every attempt is a row in `collection_logs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.dag_defaults import DAILY_RUN_TIMEOUT, DEFAULT_ARGS, START_DATE, selection_params
from ibkr_market_data.settings import (
    CLOSE_DELAY_MINUTES,
    DAILY_EXCHANGES,
    DAILY_LOOKBACK_SESSIONS,
    IBKR_POOL,
    MAX_LOOKBACK_SESSIONS,
)
from ibkr_market_data.tasks.ib_session import run_context
from ibkr_market_data.timetables import ExchangeSessionTimetable

if TYPE_CHECKING:
    # For readers only: a payload type known at parse time would make Airflow split the dict
    # a task returns into one XCom per key.
    from ibkr_market_data.payloads import GroupOutcomePayload, PlannedGroupPayload


@dag(
    dag_id="daily_market_data",
    schedule=ExchangeSessionTimetable(exchanges=DAILY_EXCHANGES, delay_minutes=CLOSE_DELAY_MINUTES),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=DAILY_RUN_TIMEOUT,
    doc_md=__doc__,
    on_failure_callback=MarketDataFailureNotifier(),
    tags=["market-data", "ibkr", "daily"],
    default_args=DEFAULT_ARGS,
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Trading date",
            description="Session to collect (YYYY-MM-DD). Empty: the latest completed trading date.",
        ),
        "lookback_sessions": Param(
            DAILY_LOOKBACK_SESSIONS,
            type="integer",
            minimum=1,
            maximum=MAX_LOOKBACK_SESSIONS,
            title="Look back (sessions)",
            description=(
                "Each symbol's last N sessions up to the date: missing ones are collected, stored ones "
                "fetched again in the same request and compared. 1: only the date itself."
            ),
        ),
        "priority": Param(
            "all",
            enum=["all", "high", "low"],
            title="Priority",
            description="high: priority-1 symbols only; low: the rest.",
        ),
        **selection_params(),
    },
)
def daily_market_data():
    @task
    def resolve_date() -> str:
        from ibkr_market_data.tasks import daily

        context = get_current_context()
        dag_run = context["dag_run"]
        return daily.resolve_date(
            context["params"], dag_run.run_type, dag_run.logical_date, dag_run.run_after
        )

    @task
    def plan(trading_date: str) -> list[PlannedGroupPayload]:
        from ibkr_market_data.tasks import daily

        context = get_current_context()
        return daily.plan(
            trading_date, context["params"], run_context(), run_type=context["dag_run"].run_type
        )

    @task(pool=IBKR_POOL, map_index_template="{{ label }}")
    def collect(group: PlannedGroupPayload) -> GroupOutcomePayload:
        from ibkr_market_data.tasks import daily

        get_current_context()["label"] = group["label"]  # type: ignore[typeddict-unknown-key]
        return daily.collect(group, run_context())

    @task(trigger_rule="all_done")
    def summary(trading_date: str | None, groups: list[PlannedGroupPayload] | None) -> dict[str, int]:
        from ibkr_market_data.tasks import daily

        return daily.summarize(trading_date, groups, get_current_context()["params"], run_context())

    trading_date = resolve_date()
    groups = plan(trading_date)
    collect.expand(group=groups) >> summary(trading_date, groups)


dag_object = daily_market_data()

if __name__ == "__main__":
    dag_object.test()
