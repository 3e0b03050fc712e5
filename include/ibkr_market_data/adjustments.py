"""Adjusted prices: factors and dividends derived from IB's ADJUSTED_LAST bars against the stored bars.

Pure logic: what one fetch says, which symbols are due a fetch, which corporate-action kinds adjusted
prices account for. The task and the SQL are elsewhere. See docs/corporate-actions.md#adjusted-prices.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from itertools import pairwise

from ibkr_market_data.bars import Bar
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.errors import UnknownCorporateActionKindError

#: The kinds a ``corporate_actions`` row may have (migration 0008's CHECK).
CORPORATE_ACTION_KINDS = ("split", "dividend", "delisting", "con_id_change", "ticker_change")
#: The kinds adjusted prices can account for; IB's raw TRADES bars are split-adjusted already.
ADJUSTABLE_KINDS = ("split", "dividend")
#: The setting naming the kinds ``adjusted=True`` accounts for (default: both).
ADJUST_FOR_VARIABLE = "IBKR_ADJUST_FOR"

#: Decimal places of a stored factor (``adjustment_factors.factor``, NUMERIC(24,12)).
FACTOR_PLACES = 12
#: Decimal places of a dividend amount (``corporate_actions.amount``, NUMERIC(20,8)).
AMOUNT_PLACES = 8
#: A fall of the factor deeper than this share is not read as a dividend (a price halved by one).
MAX_DIVIDEND_SHARE = Decimal("0.5")
#: The adjusted volume must move by more than this share between sessions for a change of share basis:
#: rounding of the adjusted volume, or a feed's small disagreement, is not a split.
BASIS_CHANGE_MIN = Decimal("0.01")
#: How dividends found here are recorded (``corporate_actions.detected_by``).
DETECTED_BY = "adjusted_last"

_FACTOR_QUANTUM = Decimal(1).scaleb(-FACTOR_PLACES)
_AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
#: A floor on the relative precision of a factor, whatever the prices' decimals.
_MIN_TOLERANCE = Decimal("1e-9")


# -- which kinds adjusted prices account for ---------------------------------------------------------


def check_adjust_for(kinds: Iterable[str], source: str = "adjust_for") -> tuple[str, ...]:
    """Return ``kinds`` checked: each an adjustable corporate-action kind, in ADJUSTABLE_KINDS order.

    :param kinds: the kinds adjusted prices should account for.
    :param source: where they were given, for the message (a setting, a parameter).
    :raises UnknownCorporateActionKindError: naming the first kind that is unknown or adjusts no price,
        or a dividend adjustment without the split one (IB's raw bars are split-adjusted already).
    """
    given = [kind.strip() if isinstance(kind, str) else kind for kind in kinds]
    for kind in given:
        if kind not in CORPORATE_ACTION_KINDS:
            raise UnknownCorporateActionKindError(
                f"{source}: unknown corporate-action kind {kind!r}; "
                f"adjusted prices account for {', '.join(ADJUSTABLE_KINDS)}"
            )
        if kind not in ADJUSTABLE_KINDS:
            raise UnknownCorporateActionKindError(
                f"{source}: corporate-action kind {kind!r} changes no price; "
                f"adjusted prices account for {', '.join(ADJUSTABLE_KINDS)}"
            )
    if not given:
        raise UnknownCorporateActionKindError(
            f"{source} is empty; give {', '.join(ADJUSTABLE_KINDS)} or split (or read raw prices)"
        )
    if "dividend" in given and "split" not in given:
        raise UnknownCorporateActionKindError(
            f"{source}: 'dividend' alone is not offered: IB's raw prices are split-adjusted already; "
            "give split,dividend or split"
        )
    return tuple(kind for kind in ADJUSTABLE_KINDS if kind in given)


def configured_adjust_for(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Return the kinds ``IBKR_ADJUST_FOR`` names (comma-separated), both when it is unset or empty.

    :raises UnknownCorporateActionKindError: naming the bad value.
    """
    text = environ.get(ADJUST_FOR_VARIABLE, "").strip()
    if not text:
        return ADJUSTABLE_KINDS
    return check_adjust_for(text.split(","), ADJUST_FOR_VARIABLE)


# -- what one ADJUSTED_LAST answer says --------------------------------------------------------------


@dataclass(frozen=True)
class StoredDay:
    """A stored daily bar's close and volume: what a factor is derived against."""

    close: Decimal
    volume: int


@dataclass(frozen=True)
class SessionFactor:
    """One session's factor: IB's adjusted close over the stored close, and the same of the volume."""

    session: dt.date
    #: Turns the stored prices into adjusted ones (split and dividend), to FACTOR_PLACES.
    factor: Decimal
    #: Turns the stored volume into adjusted volume: the split part alone (1 on today's share basis).
    volume_factor: Decimal
    raw_close: Decimal
    adjusted_close: Decimal


@dataclass(frozen=True)
class DerivedDividend:
    """A step down of the factor without a change of share basis: a dividend going ex on ``ex_date``."""

    ex_date: dt.date
    #: Per share, on the share basis of IB's prices at the fetch, to AMOUNT_PLACES.
    amount: Decimal
    #: ``1 - amount / close_before``: what IB multiplied the earlier prices by.
    factor_step: Decimal
    session_before: dt.date
    #: The close of ``session_before`` on the fetch's share basis.
    close_before: Decimal


@dataclass(frozen=True)
class Derivation:
    """What one ADJUSTED_LAST answer says about one symbol, against its stored daily bars."""

    factors: tuple[SessionFactor, ...]
    dividends: tuple[DerivedDividend, ...]
    #: Sessions where the stored bars change share basis (stored before a split, not yet re-fetched).
    basis_changes: tuple[dt.date, ...]
    #: Steps that are neither: a rise, or a fall deeper than MAX_DIVIDEND_SHARE. Left for a person.
    unexplained: tuple[dt.date, ...]
    #: Sessions IB answered that have no stored daily bar: no factor.
    unmatched: int
    #: The decimal step of IB's adjusted prices in this answer, which bounds the precision.
    price_quantum: Decimal


def price_quantum(prices: Iterable[Decimal]) -> Decimal:
    """Return the decimal step of ``prices``: 10 to the power of the most decimal places among them.

    A price sent with fewer places (``9.5``) does not widen it: across an answer most have them all.
    """
    exponents = [int(price.as_tuple().exponent) for price in prices]
    return Decimal(1).scaleb(min([0, *exponents]))


def derive(stored: Mapping[dt.date, StoredDay], adjusted: Sequence[Bar]) -> Derivation:
    """Return the factors and the dividends an ADJUSTED_LAST answer gives against the stored daily bars.

    The factor of a session is IB's adjusted close over the stored close, whatever share basis the
    stored bar is on; its volume factor is the same of the volume, which dividends leave alone. Where
    the price factor falls from one session to the next and the volume factor does not move, a
    dividend went ex: ``amount = close before * (1 - step)``.

    :param stored: the symbol's stored daily closes and volumes, by session.
    :param adjusted: IB's ADJUSTED_LAST daily bars (validated, any order).
    """
    quantum = price_quantum(price for bar in adjusted for price in (bar.open, bar.high, bar.low, bar.close))
    matched = [
        (bar, stored[bar.session_date])
        for bar in sorted(adjusted, key=lambda bar: bar.timestamp)
        if bar.session_date in stored
    ]
    prices = [bar.close / raw.close for bar, raw in matched]
    volumes = _filled(
        [Decimal(bar.volume) / raw.volume if raw.volume and bar.volume else None for bar, raw in matched]
    )
    dividends: list[DerivedDividend] = []
    basis_changes: list[dt.date] = []
    unexplained: list[dt.date] = []
    for at in range(1, len(matched)):
        (before_bar, before_raw), (bar, _) = matched[at - 1], matched[at]
        if abs(volumes[at] / volumes[at - 1] - 1) > BASIS_CHANGE_MIN:
            basis_changes.append(bar.session_date)
            continue
        drop = 1 - prices[at - 1] / prices[at]
        tolerance = quantum * (1 / before_bar.close + 1 / bar.close) + _MIN_TOLERANCE
        if tolerance < drop <= MAX_DIVIDEND_SHARE:
            close_before = before_raw.close / volumes[at - 1]
            dividends.append(
                DerivedDividend(
                    ex_date=bar.session_date,
                    amount=(close_before * drop).quantize(_AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN),
                    factor_step=(1 - drop).quantize(_FACTOR_QUANTUM, rounding=ROUND_HALF_EVEN),
                    session_before=before_bar.session_date,
                    close_before=close_before.quantize(_AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN),
                )
            )
        elif abs(drop) > tolerance:
            unexplained.append(bar.session_date)
    factors = tuple(
        SessionFactor(
            session=bar.session_date,
            factor=price.quantize(_FACTOR_QUANTUM, rounding=ROUND_HALF_EVEN),
            volume_factor=volume.quantize(_FACTOR_QUANTUM, rounding=ROUND_HALF_EVEN),
            raw_close=raw.close,
            adjusted_close=bar.close,
        )
        for (bar, raw), price, volume in zip(matched, prices, volumes, strict=True)
    )
    return Derivation(
        factors=factors,
        dividends=tuple(dividends),
        basis_changes=tuple(basis_changes),
        unexplained=tuple(unexplained),
        unmatched=len(adjusted) - len(matched),
        price_quantum=quantum,
    )


def _filled(values: Sequence[Decimal | None]) -> list[Decimal]:
    """Return ``values`` with each None replaced by the nearest earlier value, else the next, else 1."""
    filled: list[Decimal | None] = list(values)
    for at in range(1, len(filled)):
        if filled[at] is None:
            filled[at] = filled[at - 1]
    for at in range(len(filled) - 2, -1, -1):
        if filled[at] is None:
            filled[at] = filled[at + 1]
    return [Decimal(1) if value is None else value for value in filled]


# -- which symbols are due a fetch ---------------------------------------------------------------------


class DueReason(StrEnum):
    """Why a symbol's ADJUSTED_LAST is requested in this run, most pressing first."""

    ASKED = "asked for"
    NEVER_FETCHED = "never fetched"
    STORED_CHANGED = "stored bars changed or added since the last fetch"
    EX_DATE_NEAR = "an ex-date is expected about now"
    OUTDATED = "last fetched over the refresh interval ago"


_REASON_ORDER = {reason: order for order, reason in enumerate(DueReason)}


@dataclass(frozen=True)
class AdjustmentCandidate:
    """An active symbol with stored daily bars, and what is known of its adjustments."""

    symbol_id: int
    spec: ContractSpec
    first_session: dt.date
    #: When its ADJUSTED_LAST was last fetched; None: never.
    fetched_at: dt.datetime | None = None
    #: Stored daily bars changed since, or were added where the fetch gave no factor.
    stale: bool = False
    #: Ex-dates of its recorded dividends.
    ex_dates: tuple[dt.date, ...] = ()


@dataclass(frozen=True)
class DueAdjustment:
    """One ADJUSTED_LAST request to send: for whom, why, and how far back."""

    candidate: AdjustmentCandidate
    reason: DueReason
    duration: str


@dataclass(frozen=True)
class AdjustmentSchedule:
    """When a symbol's adjustments are fetched again."""

    #: Every symbol at least this often.
    refresh_interval: dt.timedelta = dt.timedelta(days=7)
    #: Daily from this many days before an expected ex-date ...
    ex_date_lead: dt.timedelta = dt.timedelta(days=7)
    #: ... to this many days after it (a late or skipped dividend).
    ex_date_lag: dt.timedelta = dt.timedelta(days=14)
    #: At most this many requests per run; the rest wait for the next run, the oldest first.
    max_symbols: int = 250


def expected_ex_date(ex_dates: Sequence[dt.date]) -> dt.date | None:
    """Return when the next dividend should go ex: the last ex-date plus the median gap; None under two."""
    if len(ex_dates) < 2:
        return None
    ordered = sorted(ex_dates)
    gaps = [(later - earlier).days for earlier, later in pairwise(ordered)]
    return ordered[-1] + dt.timedelta(days=statistics.median_low(gaps))


def duration_back_to(first_session: dt.date, as_of: dt.datetime) -> str:
    """Return the ``N Y`` duration that reaches back from ``as_of`` to ``first_session`` (at least 1 Y)."""
    days = (as_of.date() - first_session).days
    return f"{max(1, math.ceil((days + 1) / 365))} Y"


def due_reason(
    candidate: AdjustmentCandidate, as_of: dt.datetime, schedule: AdjustmentSchedule
) -> DueReason | None:
    """Return why ``candidate`` is due a fetch at ``as_of``, or None when its factors are current."""
    fetched_at = candidate.fetched_at
    if fetched_at is None:
        return DueReason.NEVER_FETCHED
    fetched_today = fetched_at.date() >= as_of.date()
    if candidate.stale and not fetched_today:
        return DueReason.STORED_CHANGED
    expected = expected_ex_date(candidate.ex_dates)
    if (
        expected is not None
        and not fetched_today
        and expected - schedule.ex_date_lead <= as_of.date() <= expected + schedule.ex_date_lag
    ):
        return DueReason.EX_DATE_NEAR
    if as_of - fetched_at >= schedule.refresh_interval:
        return DueReason.OUTDATED
    return None


def plan_adjustments(
    candidates: Sequence[AdjustmentCandidate],
    as_of: dt.datetime,
    schedule: AdjustmentSchedule,
    asked: Sequence[str] = (),
) -> tuple[list[DueAdjustment], list[AdjustmentCandidate]]:
    """Return the requests due at ``as_of``, most pressing and oldest first, and those left for later.

    :param candidates: every symbol that could be fetched.
    :param as_of: the run's moment (aware).
    :param schedule: the refresh interval, the ex-date window and the per-run cap.
    :param asked: symbols to fetch whatever their state (first in line).
    """
    due: list[DueAdjustment] = []
    for candidate in candidates:
        reason = DueReason.ASKED if candidate.spec.symbol in asked else due_reason(candidate, as_of, schedule)
        if reason is not None:
            due.append(DueAdjustment(candidate, reason, duration_back_to(candidate.first_session, as_of)))
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    due.sort(
        key=lambda item: (
            _REASON_ORDER[item.reason],
            item.candidate.fetched_at or oldest,
            item.candidate.spec.symbol,
        )
    )
    return due[: schedule.max_symbols], [item.candidate for item in due[schedule.max_symbols :]]
