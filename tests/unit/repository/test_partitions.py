"""Naming and month arithmetic of ``market_data``'s monthly partitions (pure, no database)."""

import datetime as dt

import pytest

from ibkr_market_data.repository.partitions import following_month, months_covering, partition_name


def test_a_partition_is_named_for_its_timeframe_and_month() -> None:
    assert partition_name("1min", dt.date(2025, 11, 1)) == "market_data_1min_2025_11"
    assert partition_name("1hour", dt.date(2026, 1, 1)) == "market_data_1hour_2026_01"


def test_december_is_followed_by_the_next_january() -> None:
    assert following_month(dt.date(2025, 12, 1)) == dt.date(2026, 1, 1)
    assert following_month(dt.date(2025, 1, 1)) == dt.date(2025, 2, 1)


@pytest.mark.parametrize(
    ("first", "last", "months"),
    [
        (dt.datetime(2025, 11, 3, 14, 30), dt.datetime(2025, 11, 3, 20, 59), [dt.date(2025, 11, 1)]),
        # An ASX session starts the UTC day before its date: the last minute of one month, then the next.
        (
            dt.datetime(2025, 10, 31, 23, 0),
            dt.datetime(2025, 11, 1, 5, 0),
            [dt.date(2025, 10, 1), dt.date(2025, 11, 1)],
        ),
        (
            dt.datetime(2025, 12, 31, 23, 59),
            dt.datetime(2026, 2, 1),
            [dt.date(2025, 12, 1), dt.date(2026, 1, 1), dt.date(2026, 2, 1)],
        ),
    ],
)
def test_months_covering_includes_both_ends(first, last, months) -> None:
    assert months_covering(first, last) == months


def test_months_covering_refuses_a_reversed_range() -> None:
    with pytest.raises(ValueError, match="before first"):
        months_covering(dt.datetime(2025, 11, 2), dt.datetime(2025, 11, 1))
