"""A run's verification: every planned bar stored by that run, with the values IB serves."""

import datetime as dt
from decimal import Decimal

from bench.verify import compare
from campaign.invariants import Expected, Snapshot

DAY = dt.date(2025, 1, 15)
AT = dt.datetime(2025, 1, 15)
KEY = ("AAPL", "1day", DAY)
OTHER = ("MSFT", "1day", DAY)
BAR = (Decimal("10"), Decimal("11"), Decimal("9"), Decimal("10.5"), 1000, Decimal("10.2"), 12)


def expected():
    return Expected({KEY: {AT: BAR}, OTHER: {AT: BAR}})


def test_every_planned_bar_stored_by_the_run_as_served_verifies():
    result = compare(expected(), Snapshot({KEY: {AT: BAR}, OTHER: {AT: BAR}}), stored_before=set())
    assert result.ok
    assert (result.planned_keys, result.planned_bars, result.differences) == (2, 2, 0)


def test_a_missing_bar_fails_verification():
    result = compare(expected(), Snapshot({KEY: {AT: BAR}}), stored_before=set())
    assert not result.ok and result.differences == 1
    assert result.examples == ["MSFT 1day 2025-01-15 2025-01-15 00:00: missing"]


def test_a_wrong_value_fails_verification():
    wrong = (*BAR[:3], Decimal("10.6"), *BAR[4:])
    result = compare(expected(), Snapshot({KEY: {AT: BAR}, OTHER: {AT: wrong}}), stored_before=set())
    assert not result.ok and "differs" in result.examples[0]


def test_a_bar_stored_before_the_run_is_not_its_work():
    result = compare(expected(), Snapshot({KEY: {AT: BAR}, OTHER: {AT: BAR}}), stored_before={OTHER})
    assert not result.ok and result.preexisting == 1
    assert result.examples == ["MSFT 1day 2025-01-15: stored before the run started"]


def test_a_run_that_planned_nothing_proves_nothing():
    assert not compare(Expected({}), Snapshot({}), stored_before=set()).ok
