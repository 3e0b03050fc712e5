"""The backfill DAG's params checked into a range before any database or IB work."""

import datetime as dt

import pytest

from ibkr_market_data.backfill_plan import BackfillRange
from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.tasks.backfill import check_params

NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"end_date": "2025-01-31"}, "'start_date' is required"),
        ({"start_date": "2025-01-01", "end_date": "31/01/2025"}, "'end_date' must be a date as YYYY-MM-DD"),
        ({"start_date": "2025-01-01", "end_date": "2025-01-31", "exchanges": ["LSE"]}, "unknown exchanges"),
    ],
)
def test_bad_params_are_refused_before_anything_else(params, message):
    with pytest.raises(InvalidRunParamError, match=message):
        check_params(params, now=NOW)


def test_params_become_a_range_with_every_exchange_by_default():
    request = check_params(
        {"start_date": "2025-01-01", "end_date": "2025-01-31", "symbols": "aapl, bhp"}, now=NOW
    )

    assert request == BackfillRange(
        d("2025-01-01"), d("2025-01-31"), ("ASX", "NASDAQ", "NYSE", "ARCA"), ("AAPL", "BHP"), False
    )
    assert BackfillRange.from_dict(request.to_dict()) == request
