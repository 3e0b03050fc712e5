"""Backfill the bars missing from `market_data` between `start_date` and `end_date`.

**validate** (nothing is sent on a bad param) → **find_gaps** (the gap report and the requests) →
**collect_gap** (mapped per symbol with gaps, in the `ibkr` pool) → **summary**. Exchange calendars
decide what is missing; sessions IB has no bar for go to `no_data_sessions`, changed bars to
`bar_revisions`; each exchange and timeframe whose sessions in the range are complete gets an asset
event. `dry_run` sends nothing. From a shell: `make backfill FROM=2025-01-01 TO=2025-12-31`. See
docs/backfill.md and docs/assets.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.assets import MARKET_DATA_ALIAS
from ibkr_market_data.dag_defaults import DEFAULT_ARGS, GAP_TASK_TIMEOUT, START_DATE, selection_params
from ibkr_market_data.settings import IBKR_POOL
from ibkr_market_data.tasks.ib_session import run_context
from ibkr_market_data.timeframes import DAILY

if TYPE_CHECKING:
    # For readers only: a payload type known at parse time would make Airflow split the dict
    # a task returns into one XCom per key.
    from ibkr_market_data.payloads import BackfillRequestPayload, GapOutcomePayload, PlannedGroupPayload


@dag(
    dag_id="backfill_market_data",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["market-data", "ibkr", "backfill"],
    default_args=DEFAULT_ARGS,
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
        "recheck_no_data": Param(
            False,
            type="boolean",
            title="Ask again for sessions known to have no data",
            description=(
                "Sessions IB answered empty for on two different days are not asked again; tick to ask "
                "IB once more (bars that come back are stored and the sessions leave no_data_sessions)."
            ),
        ),
        **selection_params(timeframe_default=DAILY.name),
    },
)
def backfill_market_data():
    """Wire the backfill: validate, find_gaps, collect_gap per group, summary."""

    @task
    def validate() -> BackfillRequestPayload:
        from ibkr_market_data.tasks import backfill

        return backfill.validate(get_current_context()["params"])

    @task
    def find_gaps(request: BackfillRequestPayload) -> list[PlannedGroupPayload]:
        from ibkr_market_data.tasks import backfill

        return backfill.find_gaps(request, run_context())

    @task(pool=IBKR_POOL, map_index_template="{{ label }}", execution_timeout=GAP_TASK_TIMEOUT)
    def collect_gap(group: PlannedGroupPayload) -> list[GapOutcomePayload]:
        from ibkr_market_data.tasks import backfill

        get_current_context()["label"] = group["label"]  # type: ignore[typeddict-unknown-key]
        return backfill.collect_gap(group, run_context())

    # The alert hangs on summary, not on the DAG: Airflow builds a DAG callback's context by
    # validating the params, and this DAG's required dates fail that in dag.test().
    # Events go to the alias for the assets completed only (docs/assets.md).
    @task(
        trigger_rule="all_done", on_failure_callback=MarketDataFailureNotifier(), outlets=[MARKET_DATA_ALIAS]
    )
    def summary(
        request: BackfillRequestPayload | None, gaps: list[PlannedGroupPayload] | None
    ) -> dict[str, int]:
        from ibkr_market_data.tasks import assets, backfill

        counts = backfill.summarize(request, gaps, run_context())
        if request is not None:
            assets.emit_backfill_events(request, get_current_context()["outlet_events"], run_context())
        return counts

    request = validate()
    gaps = find_gaps(request)
    collect_gap.expand(group=gaps) >> summary(request, gaps)


dag_object = backfill_market_data()

if __name__ == "__main__":
    dag_object.test()
