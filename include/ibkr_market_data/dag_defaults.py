"""What both DAGs share: start date, task defaults (retries, timeouts, the permanent-failure rule) and Params.

Every task retries with backoff, except on a failure no retry can mend: a bad run param
(``InvalidRunParamError``) or a ``PermanentError`` fails its task at once, whichever task
raises it, through one retry policy here rather than a ``retries=0`` per task.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule

from ibkr_market_data.errors import InvalidRunParamError, PermanentError
from ibkr_market_data.settings import DAILY_EXCHANGES
from ibkr_market_data.timeframes import CONFIGURED, TIMEFRAMES

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")

#: One try of any task. The hook bounds every IB request by its own timeouts, so this only ends a
#: try stuck elsewhere (a lock wait, a socket the OS never reports dead) and frees its pool slot.
TASK_TIMEOUT = dt.timedelta(minutes=30)
#: One try of a backfill's per-symbol task: up to one request per 365 days of gaps, and the head
#: timestamp request may wait its turn in IB's pacing window (60 requests per 10 minutes).
GAP_TASK_TIMEOUT = dt.timedelta(hours=2)
#: A whole daily run, retries included. Below the shortest gap between two scheduled runs (about
#: 8 hours: a US date's run at ~21:30 UTC and the next, ASX-only, date's at ~05:40 UTC), so a hung
#: run never holds back the next one (``max_active_runs=1``).
DAILY_RUN_TIMEOUT = dt.timedelta(hours=4)

PERMANENT_FAILURES = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[InvalidRunParamError, PermanentError],
            action=RetryAction.FAIL,
            reason="permanent failure: a retry cannot mend it",
        )
    ]
)

DEFAULT_ARGS = {
    "owner": "market-data",
    "retries": 3,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
    "retry_policy": PERMANENT_FAILURES,
    "execution_timeout": TASK_TIMEOUT,
}


def selection_params(timeframe_default: str = CONFIGURED) -> dict[str, Param]:
    """The ``exchanges``, ``symbols``, ``timeframe`` and ``dry_run`` Params of both trigger forms (new objects per DAG).

    ``timeframe_default``: ``configured`` (the daily DAG: each symbol's configured timeframes, or one
    for all) or a timeframe (the backfill: one timeframe per run).
    """
    choices = [*TIMEFRAMES] if timeframe_default in TIMEFRAMES else [CONFIGURED, *TIMEFRAMES]
    return {
        "exchanges": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(DAILY_EXCHANGES)},
            title="Exchanges",
            description="Listing exchanges to include; empty for all.",
        ),
        "symbols": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Symbols",
            description="Only these symbols; empty for all active ones.",
        ),
        "timeframe": Param(
            timeframe_default,
            enum=choices,
            title="Timeframe",
            description=(
                "Bars to collect: 1day, 1hour, 5min or 1min for every selected symbol"
                + (
                    "; configured: daily bars for every symbol and the intraday timeframes of "
                    "IBKR_INTRADAY_TIMEFRAMES for symbols of priority up to IBKR_INTRADAY_MAX_PRIORITY."
                    if CONFIGURED in choices
                    else "."
                )
            ),
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Log the plan and the requests it would send; send nothing, write nothing.",
        ),
    }
