"""Tell a split from corrections, and plan the re-fetch of a symbol's history on the new basis.

Pure: revised bars, stored sessions and calendars in; a ratio, an effective session and the fewest
requests out. The task module talks to IB and the database. See docs/corporate-actions.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ibkr_market_data import calendars
from ibkr_market_data.adjustments import CORPORATE_ACTION_KINDS
from ibkr_market_data.backfill_plan import (
    SessionRun,
    SymbolGaps,
    contiguous_runs,
    plan_requests,
    request_targets,
)
from ibkr_market_data.daily_plan import CollectionTarget
from ibkr_market_data.errors import UnknownCorporateActionKindError
from ibkr_market_data.repository import BarRevision, SymbolRow
from ibkr_market_data.timeframes import Timeframe

#: Corporate actions that change which contract a symbol is.
IDENTITY_KINDS = ("con_id_change", "ticker_change")

#: IB's split-adjusted prices carry 8 decimals: a re-based price may be this far from old / ratio.
ABSOLUTE_TOLERANCE = Decimal("1e-8")
#: ... or this share of it, for an adjustment computed with a less exact factor.
RELATIVE_TOLERANCE = Decimal("1e-6")
#: A ratio is snapped to the nearest fraction with at most this denominator (3:2, 1:10, 20:1).
MAX_RATIO_DENOMINATOR = 1000
#: ``corporate_actions.ratio`` keeps this many decimal places (NUMERIC(20,10)).
RATIO_PLACES = 10


def check_kind(kind: str) -> str:
    """Return ``kind`` if the ``corporate_actions`` table knows it.

    :raises UnknownCorporateActionKindError: naming the value and the known kinds.
    """
    if kind not in CORPORATE_ACTION_KINDS:
        raise UnknownCorporateActionKindError(
            f"corporate-action kind {kind!r} is unknown; known: {', '.join(CORPORATE_ACTION_KINDS)}"
        )
    return kind


def split_ratio(revisions: Sequence[BarRevision]) -> Fraction | None:
    """Return the split ratio (new shares per old) when one ratio explains every revised bar, else None.

    A split divides every earlier price by its ratio: each bar's new open, low and close must be the
    old ones divided by one ratio, within IB's 8-decimal rounding. High and volume are not compared:
    they are what late corrections change (a busted print, late prints), and one may land on a split.
    """
    if not revisions:
        return None
    old_sum = sum((revision.old_close for revision in revisions), Decimal(0))
    new_sum = sum((revision.new_close for revision in revisions), Decimal(0))
    if old_sum <= 0 or new_sum <= 0:
        return None
    ratio = _snapped(Fraction(old_sum) / Fraction(new_sum))
    if ratio == 1:
        return None
    for revision in revisions:
        for old, new in (
            (revision.old_open, revision.new_open),
            (revision.old_low, revision.new_low),
            (revision.old_close, revision.new_close),
        ):
            expected = Fraction(old) / ratio
            tolerance = max(Fraction(ABSOLUTE_TOLERANCE), Fraction(RELATIVE_TOLERANCE) * expected)
            if abs(Fraction(new) - expected) > tolerance:
                return None
    return ratio


def _snapped(estimate: Fraction) -> Fraction:
    """Return the simplest fraction within the relative tolerance of ``estimate``, or ``estimate`` itself."""
    simple = estimate.limit_denominator(MAX_RATIO_DENOMINATOR)
    if abs(simple - estimate) <= Fraction(RELATIVE_TOLERANCE) * estimate:
        return simple
    return estimate


def ratio_decimal(ratio: Fraction) -> Decimal:
    """Return ``ratio`` as the ``corporate_actions.ratio`` stores it."""
    return (Decimal(ratio.numerator) / Decimal(ratio.denominator)).quantize(Decimal(1).scaleb(-RATIO_PLACES))


def first_session_after(exchange: str, day: dt.date, last: dt.date) -> dt.date:
    """Return the first session of ``exchange`` after ``day``, at most ``last``: where a change took effect.

    IB's answers show a change only on the first run after it; the sessions stored before that run
    were taken on the old terms, so the change is dated the session after the newest of them.
    """
    later = calendars.sessions_between(exchange, day + dt.timedelta(days=1), last)
    return later[0] if later else last


@dataclass(frozen=True)
class RebasePlan:
    """One timeframe of a symbol's stored history to fetch again: its sessions, runs and requests."""

    timeframe: Timeframe
    sessions: tuple[dt.date, ...]
    runs: tuple[SessionRun, ...]
    targets: tuple[CollectionTarget, ...]


def plan_rebase(row: SymbolRow, tf: Timeframe, sessions: Iterable[dt.date]) -> RebasePlan:
    """Return the fewest requests that fetch ``sessions`` of ``tf`` again: at most one per contiguous run.

    The runs are consecutive in the exchange's calendar; a request covers a run (or several, when one
    request can span them), cut where IB's longest duration for the bar size ends.
    """
    wanted = sorted(set(sessions))
    if not wanted:
        return RebasePlan(tf, (), (), ())
    calendar = calendars.sessions_between(row.primary_exchange, wanted[0], wanted[-1])
    requests = plan_requests(calendar, wanted, tf.max_request_days)
    gaps = SymbolGaps(
        symbol_id=row.id,
        symbol=row.symbol,
        exchange=row.primary_exchange,
        sessions=len(calendar),
        stored=len(wanted),
        known_no_data=0,
        missing=wanted,
        runs=contiguous_runs(calendar, wanted),
        requests=requests,
    )
    return RebasePlan(tf, tuple(wanted), tuple(gaps.runs), tuple(request_targets(row, gaps, tf)))


def describe_action(action: Mapping[str, Any]) -> str:
    """Return one corporate action as a phrase: its kind, its numbers and how it was found."""
    details = action["details"] or {}
    kind = action["kind"]
    if kind == "split":
        text = f"split {split_ratio_text(action['ratio'])}"
        refetched = details.get("refetched") or {}
        if refetched:
            requests = sum(counts.get("requests", 0) for counts in refetched.values())
            revised = sum(counts.get("revised", 0) for counts in refetched.values())
            text += f", history fetched again ({requests} requests, {revised} bars revised)"
        if details.get("rebase") == "pending":
            text += ", history still to fetch again"
    elif kind == "delisting":
        text = f"delisting, last session {details.get('last_session') or 'unknown'}"
    elif kind in IDENTITY_KINDS:
        text = describe_identity(action)
    elif kind == "dividend":
        text = f"dividend {action['amount']}"
    else:
        text = kind
    return f"{text} (found by {action['detected_by']})"


def describe_identity(action: Mapping[str, Any]) -> str:
    """Return an identity change as ``conId 1 -> 2`` or ``ticker FB -> META``."""
    details = action["details"] or {}
    if action["kind"] == "ticker_change":
        return f"ticker {details.get('old_symbol', '?')} -> {details.get('new_symbol', '?')}"
    return f"conId {details.get('old_con_id', '?')} -> {details.get('new_con_id', '?')}"


def split_ratio_text(ratio: Decimal | None) -> str:
    """Return a split ratio as new shares to old: ``4:1``, ``3:2``, ``1:10``."""
    if ratio is None:
        return "?"
    fraction = Fraction(ratio).limit_denominator(1000)
    return f"{fraction.numerator}:{fraction.denominator}"
