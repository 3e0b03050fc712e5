"""Alert once when a trading date is still incomplete after its close plus a delay, and once on recovery.

Runs every 15 minutes over the last week (delay: `IBKR_FRESHNESS_DELAY_MINUTES`, default 180); each pass
first re-sends what an alert channel did not take. A healthy pass pings the `market_data_heartbeat` URL,
so a dead scheduler is caught by the silence; a failed one alerts. See docs/operations.md#alerts.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.alerts import MarketDataFailureNotifier
from ibkr_market_data.dag_defaults import DEFAULT_ARGS, START_DATE

WATCHDOG_INTERVAL = dt.timedelta(minutes=15)


@dag(
    dag_id="market_data_freshness",
    schedule=WATCHDOG_INTERVAL,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    on_failure_callback=MarketDataFailureNotifier(list_symbols=False),
    tags=["market-data", "alerts"],
    default_args=DEFAULT_ARGS,
    params={
        "delay_minutes": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Delay after the close (minutes)",
            description="Empty: IBKR_FRESHNESS_DELAY_MINUTES, else 180.",
        ),
        "lookback_days": Param(7, type="integer", minimum=1, maximum=60, title="Days looked back"),
    },
)
def market_data_freshness():
    """Wire the one task: check_freshness."""

    @task
    def check_freshness() -> dict:
        from ibkr_market_data.alerts import watchdog_task

        context = get_current_context()
        dag_run = context["dag_run"]
        return watchdog_task(context["params"], dag_run.logical_date or dag_run.run_after)

    check_freshness()


dag_object = market_data_freshness()

if __name__ == "__main__":
    dag_object.test()
