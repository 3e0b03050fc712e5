"""Collect every active symbol's bars for one trading date from Interactive Brokers.

One run per trading date, 30 minutes after the last close among the exchanges trading it:
**resolve_date** → **plan** (what is missing over each symbol's lookback window; on a fresh install
it first loads the universe through IB) → **collect** (mapped, in the `ibkr` pool) →
**corporate_actions** (splits, conId changes, delistings; see docs/corporate-actions.md) →
**summary** (counts per status, data-quality checks, an alert on an unusual share of no-data answers,
an asset event per exchange and timeframe completed). A rerun requests nothing already stored; every
attempt is a row in `collection_logs`. Trigger by hand with a `date`, `dry_run`, filters and a
`timeframe`. See docs/daily-dag.md and docs/assets.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.assets import MARKET_DATA_ALIAS
from ibkr_market_data.dag_defaults import (
    DAILY_RUN_TIMEOUT,
    DEFAULT_ARGS,
    GAP_TASK_TIMEOUT,
    START_DATE,
    selection_params,
)
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
    """Wire the daily run: resolve_date, plan, collect per group, corporate_actions, summary."""

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

    # A split re-fetches the symbol's stored history: as long as a backfill's share, at worst.
    @task(pool=IBKR_POOL, trigger_rule="all_done", execution_timeout=GAP_TASK_TIMEOUT)
    def corporate_actions(trading_date: str | None) -> dict[str, int]:
        from ibkr_market_data.tasks import corporate_actions

        return corporate_actions.settle(trading_date, get_current_context()["params"], run_context())

    # The alias, not one outlet per asset: an outlet Asset gets an event on every success, and only
    # the exchanges whose session is complete should (docs/assets.md).
    @task(trigger_rule="all_done", outlets=[MARKET_DATA_ALIAS])
    def summary(trading_date: str | None, groups: list[PlannedGroupPayload] | None) -> dict[str, int]:
        from ibkr_market_data.tasks import assets, daily

        context = get_current_context()
        counts = daily.summarize(trading_date, groups, context["params"], run_context())
        if trading_date is not None:
            assets.emit_daily_events(trading_date, context["outlet_events"], run_context())
        return counts

    trading_date = resolve_date()
    groups = plan(trading_date)
    collect.expand(group=groups) >> corporate_actions(trading_date) >> summary(trading_date, groups)


dag_object = daily_market_data()

if __name__ == "__main__":
    dag_object.test()
