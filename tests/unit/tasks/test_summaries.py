"""The summary tasks when an upstream task failed: a clear failure naming it, no retry, no database."""

import pytest

from ibkr_market_data.errors import PermanentError
from ibkr_market_data.repository import RunContext
from ibkr_market_data.tasks import backfill, daily

RUN = RunContext("test", "manual__upstream_failed")
REQUEST = {"start": "2025-01-13", "end": "2025-01-17", "exchanges": ["ASX"], "symbols": [], "dry_run": False}


def test_daily_summary_after_resolve_date_failed_names_it():
    with pytest.raises(
        PermanentError,
        match="No trading date: nothing was planned or collected because task 'resolve_date' failed",
    ):
        daily.summarize(None, None, {}, RUN)


def test_daily_summary_after_plan_failed_names_it():
    with pytest.raises(PermanentError, match="Trading date 2025-01-15: .* task 'plan' failed"):
        daily.summarize("2025-01-15", None, {}, RUN)


def test_backfill_summary_after_validate_or_find_gaps_failed_names_it():
    with pytest.raises(PermanentError, match="Backfill: .* task 'validate' failed"):
        backfill.summarize(None, None, RUN)
    with pytest.raises(PermanentError, match="Backfill 2025-01-13..2025-01-17: .* task 'find_gaps' failed"):
        backfill.summarize(REQUEST, None, RUN)
