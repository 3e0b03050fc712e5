"""Adjusted prices, pure logic: factors and dividends from an answer, who is due, which kinds count."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from ibkr_market_data.adjustments import (
    AdjustmentCandidate,
    AdjustmentSchedule,
    DueReason,
    StoredDay,
    check_adjust_for,
    configured_adjust_for,
    derive,
    due_reason,
    duration_back_to,
    expected_ex_date,
    plan_adjustments,
)
from ibkr_market_data.bars import Bar
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.errors import UnknownCorporateActionKindError

DAYS = [dt.date(2025, 3, 3) + dt.timedelta(days=offset) for offset in range(10)]
AS_OF = dt.datetime(2025, 6, 30, 22, tzinfo=dt.UTC)


def bar(day: dt.date, close: Decimal, volume: int) -> Bar:
    return Bar(dt.datetime.combine(day, dt.time()), close, close, close, close, volume, close, 1)


def series(closes, volumes=None, factors=None, places=8):
    """Return stored closes and IB's adjusted bars: each close times its factor, to ``places``."""
    volumes = volumes or [1000] * len(closes)
    factors = factors or [Decimal(1)] * len(closes)
    quantum = Decimal(1).scaleb(-places)
    stored = {day: StoredDay(Decimal(c), v) for day, c, v in zip(DAYS, closes, volumes, strict=False)}
    adjusted = [
        bar(day, (Decimal(c) * f).quantize(quantum, rounding=ROUND_HALF_EVEN), v)
        for day, c, v, f in zip(DAYS, closes, volumes, factors, strict=False)
    ]
    return stored, adjusted


# -- which kinds adjusted prices account for ---------------------------------------------------------


def test_the_kinds_are_checked_and_put_in_order() -> None:
    assert check_adjust_for([" dividend", "split "]) == ("split", "dividend")
    assert check_adjust_for(["split"]) == ("split",)
    assert configured_adjust_for({}) == ("split", "dividend")
    assert configured_adjust_for({"IBKR_ADJUST_FOR": " "}) == ("split", "dividend")
    assert configured_adjust_for({"IBKR_ADJUST_FOR": "split"}) == ("split",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "split,bonus",
            "IBKR_ADJUST_FOR: unknown corporate-action kind 'bonus'; "
            "adjusted prices account for split, dividend",
        ),
        (
            "delisting",
            "IBKR_ADJUST_FOR: corporate-action kind 'delisting' changes no price; "
            "adjusted prices account for split, dividend",
        ),
        ("dividend", "IBKR_ADJUST_FOR: 'dividend' alone is not offered"),
        ("split,", "IBKR_ADJUST_FOR: unknown corporate-action kind ''"),
    ],
)
def test_a_kind_adjusted_prices_cannot_account_for_is_refused_naming_it(value, message) -> None:
    with pytest.raises(UnknownCorporateActionKindError) as refused:
        configured_adjust_for({"IBKR_ADJUST_FOR": value})
    assert str(refused.value).startswith(message)


def test_no_kind_at_all_is_refused() -> None:
    with pytest.raises(UnknownCorporateActionKindError, match="adjust_for is empty"):
        check_adjust_for([])


# -- what one answer says -----------------------------------------------------------------------------


def test_a_step_of_the_factor_is_a_dividend_of_the_close_before_times_the_step() -> None:
    step = 1 - Decimal("0.5") / Decimal("50.00")  # a 0.50 dividend on a 50.00 close, ex on DAYS[5]
    stored, adjusted = series(
        ["49.10", "49.50", "50.20", "49.80", "50.00", "49.30", "49.90", "50.40", "50.10", "49.70"],
        factors=[step] * 5 + [Decimal(1)] * 5,
    )
    derivation = derive(stored, adjusted)
    [dividend] = derivation.dividends
    assert dividend.ex_date == DAYS[5] and dividend.session_before == DAYS[4]
    assert dividend.amount == Decimal("0.50000000")
    assert dividend.factor_step == step.quantize(Decimal("1e-12"))
    assert [factor.factor for factor in derivation.factors] == [
        (adjusted_bar.close / stored[adjusted_bar.session_date].close).quantize(Decimal("1e-12"))
        for adjusted_bar in adjusted
    ]
    assert {factor.volume_factor for factor in derivation.factors} == {Decimal(1)}
    assert derivation.basis_changes == derivation.unexplained == ()


def test_rounding_of_the_adjusted_prices_is_no_dividend() -> None:
    # IB's adjusted prices to the cent: factors jitter by up to half a cent over the price.
    closes = ["10.01", "10.37", "9.83", "10.11", "9.97", "10.23", "10.05", "9.91", "10.17", "10.29"]
    stored, adjusted = series(closes, factors=[Decimal("0.9731")] * 10, places=2)
    derivation = derive(stored, adjusted)
    assert derivation.price_quantum == Decimal("0.01")
    assert derivation.dividends == () and derivation.unexplained == ()


def test_stored_bars_on_an_older_share_basis_are_a_basis_change_not_a_dividend() -> None:
    # Sessions stored before a 4-for-1 split: four times the price, a quarter of the volume.
    closes = ["200.00", "204.00", "198.00", "202.00", "50.25", "50.75", "49.50", "51.00", "50.50", "50.00"]
    volumes = [250] * 4 + [1000] * 6
    stored, _ = series(closes, volumes)
    today = [Decimal(c) / (4 if at < 4 else 1) for at, c in enumerate(closes)]
    adjusted = [bar(day, close, 1000) for day, close in zip(DAYS, today, strict=True)]
    derivation = derive(stored, adjusted)
    assert derivation.basis_changes == (DAYS[4],)
    assert derivation.dividends == () and derivation.unexplained == ()
    assert [factor.volume_factor for factor in derivation.factors] == [Decimal(4)] * 4 + [Decimal(1)] * 6
    assert [factor.factor for factor in derivation.factors[:4]] == [Decimal("0.25")] * 4


def test_a_rise_or_a_deep_fall_is_left_unexplained() -> None:
    closes = ["10.00"] * 10
    up = derive(*series(closes, factors=[Decimal(1)] * 3 + [Decimal("0.9")] * 7))
    assert up.unexplained == (DAYS[3],) and up.dividends == ()
    deep = derive(*series(closes, factors=[Decimal("0.4")] * 3 + [Decimal(1)] * 7))
    assert deep.unexplained == (DAYS[3],) and deep.dividends == ()


def test_sessions_without_a_stored_bar_have_no_factor_and_a_zero_volume_borrows_a_neighbours() -> None:
    stored, adjusted = series(["10.00"] * 10, volumes=[0, 500, 500, 500, 500, 500, 500, 500, 500, 500])
    del stored[DAYS[9]]
    derivation = derive(stored, adjusted)
    assert [factor.session for factor in derivation.factors] == DAYS[:9]
    assert derivation.unmatched == 1
    assert derivation.factors[0].volume_factor == Decimal(1)


# -- who is due a fetch ------------------------------------------------------------------------------


def candidate(symbol="AAPL", fetched_days_ago=None, stale=False, ex_dates=(), first=dt.date(2024, 7, 1)):
    fetched = None if fetched_days_ago is None else AS_OF - dt.timedelta(days=fetched_days_ago)
    return AdjustmentCandidate(1, ContractSpec(symbol), first, fetched, stale, tuple(ex_dates))


def test_due_reasons() -> None:
    schedule = AdjustmentSchedule()
    quarterly = [dt.date(2024, 11, 8), dt.date(2025, 2, 7), dt.date(2025, 5, 9)]  # next: about 8 August
    assert due_reason(candidate(), AS_OF, schedule) == DueReason.NEVER_FETCHED
    assert due_reason(candidate(fetched_days_ago=1, stale=True), AS_OF, schedule) == DueReason.STORED_CHANGED
    assert due_reason(candidate(fetched_days_ago=0, stale=True), AS_OF, schedule) is None, "once a day"
    assert due_reason(candidate(fetched_days_ago=6), AS_OF, schedule) is None
    assert due_reason(candidate(fetched_days_ago=7), AS_OF, schedule) == DueReason.OUTDATED
    near = AS_OF.replace(month=8, day=5)
    fetched_yesterday = AdjustmentCandidate(
        1, ContractSpec("AAPL"), dt.date(2024, 7, 1), near - dt.timedelta(days=1), False, tuple(quarterly)
    )
    assert due_reason(fetched_yesterday, near, schedule) == DueReason.EX_DATE_NEAR
    far = near.replace(month=7, day=20)
    fetched_yesterday_far = AdjustmentCandidate(
        1, ContractSpec("AAPL"), dt.date(2024, 7, 1), far - dt.timedelta(days=1), False, tuple(quarterly)
    )
    assert due_reason(fetched_yesterday_far, far, schedule) is None


def test_the_next_ex_date_is_the_last_plus_the_median_gap() -> None:
    assert expected_ex_date([dt.date(2025, 5, 9)]) is None
    assert expected_ex_date([dt.date(2025, 5, 9), dt.date(2024, 11, 8), dt.date(2025, 2, 7)]) == dt.date(
        2025, 8, 8
    )


def test_the_duration_reaches_back_to_the_first_stored_session() -> None:
    assert duration_back_to(dt.date(2024, 7, 1), AS_OF) == "1 Y"
    assert duration_back_to(dt.date(2024, 6, 30), AS_OF) == "2 Y"
    assert duration_back_to(dt.date(2025, 6, 1), AS_OF) == "1 Y"
    assert duration_back_to(dt.date(2020, 1, 2), AS_OF) == "6 Y"


def test_the_plan_puts_the_most_pressing_and_oldest_first_and_caps_the_run() -> None:
    candidates = [
        candidate("OLD", fetched_days_ago=30),
        candidate("OLDER", fetched_days_ago=60),
        candidate("FRESH", fetched_days_ago=1),
        candidate("NEW"),
        candidate("CHANGED", fetched_days_ago=2, stale=True),
        candidate("WANTED", fetched_days_ago=1),
    ]
    due, later = plan_adjustments(candidates, AS_OF, AdjustmentSchedule(max_symbols=4), asked=["WANTED"])
    assert [(item.candidate.spec.symbol, item.reason) for item in due] == [
        ("WANTED", DueReason.ASKED),
        ("NEW", DueReason.NEVER_FETCHED),
        ("CHANGED", DueReason.STORED_CHANGED),
        ("OLDER", DueReason.OUTDATED),
    ]
    assert [item.spec.symbol for item in later] == ["OLD"]
    assert {item.duration for item in due} == {"1 Y"}
