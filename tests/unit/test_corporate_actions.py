"""Telling a split from corrections, dating it, and planning the re-fetch of history (pure)."""

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import pytest

from ibkr_market_data import calendars
from ibkr_market_data.corporate_actions import (
    CORPORATE_ACTION_KINDS,
    check_kind,
    first_session_after,
    plan_rebase,
    ratio_decimal,
    split_ratio,
)
from ibkr_market_data.errors import UnknownCorporateActionKindError
from ibkr_market_data.repository import BarRevision, SymbolRow
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, ONE_MINUTE

AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
EIGHT_PLACES = Decimal("1e-8")


def adjusted(price: Decimal, ratio: Decimal) -> Decimal:
    """Return ``price`` on the new basis as IB serves it: divided, to 8 decimal places."""
    return (price / ratio).quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN)


def revision(day: int, price: str, ratio: str, **changes: Decimal) -> BarRevision:
    close = Decimal(price)
    old = {"open": close - 1, "high": close + 2, "low": close - 2, "close": close}
    new = {name: adjusted(price, Decimal(ratio)) for name, price in old.items()} | changes
    return BarRevision(
        dt.datetime(2025, 6, day),
        old["open"],
        old["high"],
        old["low"],
        old["close"],
        1000,
        new["open"],
        new["high"],
        new["low"],
        new["close"],
        int(1000 * Decimal(ratio)),
    )


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        ("4", Fraction(4)),
        ("1.5", Fraction(3, 2)),
        ("0.1", Fraction(1, 10)),
        ("3", Fraction(3)),
        ("20", Fraction(20)),
    ],
)
def test_one_ratio_over_every_revised_bar_is_a_split(ratio, expected):
    revisions = [
        revision(day, close, ratio) for day, close in ((10, "201.37"), (11, "203.55"), (12, "2.0131"))
    ]
    assert split_ratio(revisions) == expected


def test_corrections_are_not_a_split():
    # A late correction changes one bar's close, another's volume: no one ratio explains them.
    corrected = revision(10, "201.37", "1", close=Decimal("201.12"))
    assert split_ratio([corrected]) is None
    assert split_ratio([revision(10, "201.37", "4"), revision(11, "203.55", "2")]) is None
    assert split_ratio([revision(10, "201.37", "4"), corrected]) is None
    assert split_ratio([]) is None


def test_a_busted_high_on_a_split_bar_still_reads_as_the_split():
    busted = revision(11, "203.55", "4", high=Decimal("52.9"))
    assert split_ratio([revision(10, "201.37", "4"), busted]) == 4


def test_prices_off_by_more_than_ibs_rounding_are_not_the_split():
    off = revision(10, "201.37", "4")
    nudged = BarRevision(**{**vars(off), "new_close": off.new_close + Decimal("0.0001")})
    assert split_ratio([revision(11, "203.55", "4"), nudged]) is None


def test_the_ratio_is_stored_to_ten_places():
    assert ratio_decimal(Fraction(4)) == Decimal("4.0000000000")
    assert ratio_decimal(Fraction(1, 3)) == Decimal("0.3333333333")


def test_a_change_is_dated_the_session_after_the_newest_bar_on_the_old_terms():
    friday = dt.date(2025, 6, 13)
    assert first_session_after("NASDAQ", friday, dt.date(2025, 6, 20)) == dt.date(2025, 6, 16)
    # Never later than the run's own date.
    assert first_session_after("NASDAQ", friday, friday) == friday


def test_unknown_kinds_are_refused_naming_the_value():
    assert check_kind("split") == "split"
    with pytest.raises(UnknownCorporateActionKindError) as raised:
        check_kind("merger")
    assert str(raised.value) == (
        "corporate-action kind 'merger' is unknown; "
        "known: split, dividend, delisting, con_id_change, ticker_change"
    )


def test_the_kinds_are_the_tables():
    import importlib

    migration = importlib.import_module("ibkr_market_data.migrations.versions.0008_corporate_actions")
    assert migration.KINDS == CORPORATE_ACTION_KINDS


def nasdaq(start: str, end: str) -> list[dt.date]:
    return calendars.sessions_between("NASDAQ", dt.date.fromisoformat(start), dt.date.fromisoformat(end))


def test_daily_history_is_fetched_again_in_one_request_per_contiguous_range():
    stored = nasdaq("2024-06-03", "2024-12-31") + nasdaq("2025-01-15", "2025-06-13")
    plan = plan_rebase(AAPL, DAILY, stored)
    assert len(plan.runs) == 2
    # 2024-06-03 + 365 days reaches 2025-06-02: IB's longest daily request cuts the second range.
    assert [(t.first_session_date, t.session_date, t.duration) for t in plan.targets] == [
        (dt.date(2024, 6, 3), dt.date(2025, 6, 2), "365 D"),
        (dt.date(2025, 6, 3), dt.date(2025, 6, 13), "11 D"),
    ]


def test_intraday_history_is_cut_at_ibs_longest_request_for_the_bar_size():
    five_minutes = plan_rebase(AAPL, FIVE_MINUTES, nasdaq("2025-05-05", "2025-05-16"))
    assert len(five_minutes.runs) == 1
    assert [(t.first_session_date, t.session_date) for t in five_minutes.targets] == [
        (dt.date(2025, 5, 5), dt.date(2025, 5, 9)),
        (dt.date(2025, 5, 12), dt.date(2025, 5, 16)),
    ]
    minutes = plan_rebase(AAPL, ONE_MINUTE, [dt.date(2025, 6, 2), dt.date(2025, 6, 3)])
    assert len(minutes.runs) == 1 and len(minutes.targets) == 2  # one day per 1-minute request
    assert plan_rebase(AAPL, DAILY, []).targets == ()
