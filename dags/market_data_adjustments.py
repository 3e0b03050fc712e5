"""Keep each symbol's adjustment factors current from IB's ADJUSTED_LAST (split- and dividend-adjusted bars).

Runs after each trading date's collection. **refresh_adjustments** (in the `ibkr` pool) sends one
ADJUSTED_LAST request per symbol due (never fetched; stored bars changed; an ex-date expected about
now; or last fetched 7 days ago), back from now over all its stored history, and stores the factors
and the dividends they show. Trigger by hand with `symbols` to refresh those now. See
docs/corporate-actions.md#adjusted-prices.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.dag_defaults import DEFAULT_ARGS, START_DATE
from ibkr_market_data.settings import ADJUSTMENTS_DELAY_MINUTES, DAILY_EXCHANGES, IBKR_POOL
from ibkr_market_data.tasks.ib_session import run_context
from ibkr_market_data.timetables import ExchangeSessionTimetable


@dag(
    dag_id="market_data_adjustments",
    schedule=ExchangeSessionTimetable(exchanges=DAILY_EXCHANGES, delay_minutes=ADJUSTMENTS_DELAY_MINUTES),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    on_failure_callback=MarketDataFailureNotifier(),
    tags=["market-data", "ibkr", "adjustments"],
    default_args=DEFAULT_ARGS,
    params={
        "symbols": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Symbols",
            description="Fetch these symbols' adjustments now, whatever their state; empty: those due.",
        ),
        "max_symbols": Param(
            250,
            type="integer",
            minimum=1,
            title="Most requests",
            description="At most this many ADJUSTED_LAST requests; the rest wait for the next run.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Log the symbols due and why; send nothing, write nothing.",
        ),
    },
)
def market_data_adjustments():
    """Wire the one task: refresh_adjustments."""

    @task(pool=IBKR_POOL)
    def refresh_adjustments() -> dict[str, int]:
        from ibkr_market_data.tasks import adjustments

        context = get_current_context()
        dag_run = context["dag_run"]
        return adjustments.refresh_adjustments(context["params"], run_context(), dag_run.run_after)

    refresh_adjustments()


dag_object = market_data_adjustments()

if __name__ == "__main__":
    dag_object.test()
