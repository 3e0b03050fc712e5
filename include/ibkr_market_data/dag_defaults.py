"""Hold what both DAGs share: start date, task defaults (retries, timeouts, permanent failures), Params.

Every task retries with backoff, except on a bad run param or a ``PermanentError``, which one retry
policy here fails at once. See docs/daily-dag.md.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule

from ibkr_market_data.errors import (
    GroupingConfigError,
    IbkrConfigError,
    InvalidQualitySettingError,
    InvalidRunParamError,
    PermanentError,
)
from ibkr_market_data.settings import DAILY_EXCHANGES
from ibkr_market_data.timeframes import CONFIGURED, TIMEFRAMES

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")

#: One try of any task. IB requests have their own timeouts: this ends a try stuck elsewhere (a lock
#: wait, a dead socket) and frees its pool slot.
TASK_TIMEOUT = dt.timedelta(minutes=30)
#: One try of a backfill's per-symbol task, whose requests may wait their turn in IB's pacing window.
GAP_TASK_TIMEOUT = dt.timedelta(hours=2)
#: A whole daily run, retries included. Under the ~8 h between two scheduled runs, so a hung run
#: never holds back the next one (``max_active_runs=1``).
DAILY_RUN_TIMEOUT = dt.timedelta(hours=4)

PERMANENT_FAILURES = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            # A bad param or setting stays bad on every try.
            exception=[
                InvalidRunParamError,
                PermanentError,
                GroupingConfigError,
                IbkrConfigError,
                InvalidQualitySettingError,
            ],
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
    """Return the ``exchanges``, ``symbols``, ``timeframe`` and ``dry_run`` Params of both trigger forms.

    Each call returns new objects, one set per DAG.

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
