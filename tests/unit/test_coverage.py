"""Coverage without a database: the freshness delay, the session that is due and the report range."""

from __future__ import annotations

import datetime as dt

import pytest

from ibkr_market_data import coverage
from ibkr_market_data.errors import InvalidRangeError

DAY = dt.date(2025, 1, 14)


@pytest.mark.parametrize(("raw", "minutes"), [("", 180), ("90", 90), ("0", 0), ("soon", 180), ("-5", 180)])
def test_freshness_delay_from_the_environment(monkeypatch, raw, minutes):
    monkeypatch.setenv("IBKR_FRESHNESS_DELAY_MINUTES", raw)
    assert coverage.freshness_delay() == dt.timedelta(minutes=minutes)


def test_due_session_waits_for_the_delay_after_the_close():
    # NASDAQ closes 2025-01-14 at 21:00 UTC; with a 3 h delay the 14th is due from 00:00 UTC on the 15th.
    before = dt.datetime(2025, 1, 14, 23, 59, tzinfo=dt.UTC)
    after = dt.datetime(2025, 1, 15, 0, 0, tzinfo=dt.UTC)
    assert coverage.due_session("NASDAQ", before, dt.timedelta(hours=3)) == dt.date(2025, 1, 13)
    assert coverage.due_session("NASDAQ", after, dt.timedelta(hours=3)) == DAY


def test_ranges_are_checked():
    with pytest.raises(InvalidRangeError, match="is after 'to'"):
        coverage.check_report_range(DAY, DAY - dt.timedelta(days=1))
    with pytest.raises(InvalidRangeError, match="at most 400"):
        coverage.check_report_range(DAY - dt.timedelta(days=401), DAY)
    coverage.check_report_range(DAY - dt.timedelta(days=400), DAY)


def test_expected_counts_keep_to_periods_and_the_first_available_date():
    groups = [
        ("NASDAQ", None, (), 3),  # always expected
        ("NASDAQ", None, ((None, dt.date(2025, 1, 13)),), 1),  # delisted after its last session
        ("NASDAQ", None, ((dt.date(2025, 1, 14), None),), 2),  # joined the list on the 14th
        ("NASDAQ", dt.date(2025, 1, 15), (), 4),  # IB has data from the 15th
        ("ASX", None, (), 5),
    ]
    assert coverage.expected_count(groups, "NASDAQ", dt.date(2025, 1, 13)) == 4
    assert coverage.expected_count(groups, "NASDAQ", DAY) == 5
    assert coverage.expected_count(groups, "NASDAQ", dt.date(2025, 1, 15)) == 9
