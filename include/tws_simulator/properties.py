"""Market properties: what IB does to one symbol's data over time, as fault-plan settings.

Each setting of :data:`PARSERS` is read from JSON (``IBKR_SIM_FAULTS``) into a frozen value here;
:mod:`~tws_simulator.served` applies them. The forms and the IB behaviour each one models are in
``docs/ib-behaviours.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

#: The codes a delisted contract's history requests may answer (``delisting``'s ``error``).
DELISTED_HISTORY_ERRORS = (162, 200)


class BadPropertyValue(ValueError):
    """A market property's value does not have its documented form; the message says the form."""


@dataclass(frozen=True)
class Illiquidity:
    """Sessions without a trade: those in ``dates``, and a seeded ``share`` of the others."""

    share: float = 0.0
    dates: frozenset[dt.date] = frozenset()


@dataclass(frozen=True)
class Halt:
    """No trade on ``day`` from ``start`` to ``end`` (the exchange's local time, end excluded)."""

    day: dt.date
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class Split:
    """A split effective on ``effective`` (first session on the new basis): ``ratio`` new shares per old."""

    effective: dt.date
    ratio: Decimal


@dataclass(frozen=True)
class Dividend:
    """A cash dividend of ``amount`` per share (as paid); ``ex_date`` is the first session without it."""

    ex_date: dt.date
    amount: Decimal


@dataclass(frozen=True)
class Delisting:
    """The contract is gone from ``effective`` on; history requests by conId answer ``history_error``."""

    effective: dt.date
    history_error: int = 162


@dataclass(frozen=True)
class ConIdChange:
    """From ``effective`` on, the symbol's contract has conId ``con_id``; the old one is unknown."""

    effective: dt.date
    con_id: int


@dataclass(frozen=True)
class MarketProperties:
    """Every market property of one symbol; the defaults change nothing."""

    illiquid_sessions: Illiquidity | None = None
    illiquid_minutes: float = 0.0
    halts: tuple[Halt, ...] = ()
    late_correction_days: int = 0
    splits: tuple[Split, ...] = ()
    dividends: tuple[Dividend, ...] = ()
    delisting: Delisting | None = None
    con_id_change: ConIdChange | None = None

    @property
    def changes_bars(self) -> bool:
        """Return whether any property changes which TRADES bars are served, or their values.

        Dividends do not: IB's TRADES history is not adjusted for them, only ``ADJUSTED_LAST`` is.
        """
        return bool(
            self.illiquid_sessions
            or self.illiquid_minutes
            or self.halts
            or self.late_correction_days
            or self.splits
            or self.delisting
        )


NO_PROPERTIES = MarketProperties()


def _date(name: str, value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadPropertyValue(f"{name} needs dates as 'YYYY-MM-DD', not {value!r}") from None


def _time(name: str, value: Any) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadPropertyValue(
            f"{name} needs times as 'HH:MM' (the exchange's time), not {value!r}"
        ) from None


def _share(name: str, value: Any, below_one: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadPropertyValue(f"{name} takes a share from 0 to 1, not {value!r}")
    if below_one and value == 1:
        raise BadPropertyValue(f"{name} takes a share below 1 (a session needs one trade), not {value!r}")
    return float(value)


def _object(name: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    form = "{" + ", ".join(f'"{key}": ...' for key in required + optional) + "}"
    if not isinstance(value, dict) or not set(required) <= set(value) <= set(required + optional):
        raise BadPropertyValue(f"{name} takes {form}, not {value!r}")
    return value


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_illiquid_sessions(value: Any) -> Illiquidity:
    """Read ``illiquid_sessions``: a share of sessions (0 to 1), or a list of dates."""
    if isinstance(value, list):
        return Illiquidity(dates=frozenset(_date("illiquid_sessions", day) for day in value))
    return Illiquidity(share=_share("illiquid_sessions", value, below_one=False))


def parse_illiquid_minutes(value: Any) -> float:
    """Read ``illiquid_minutes``: the share of regular-hours minutes without a trade (0 to below 1)."""
    return _share("illiquid_minutes", value, below_one=True)


def parse_halts(value: Any) -> tuple[Halt, ...]:
    """Read ``halts``: ``{"date", "from", "to"}`` or a list of them (local times, from before to)."""
    halts = []
    for item in _listed(value):
        fields = _object("halts", item, ("date", "from", "to"))
        halt = Halt(
            _date("halts", fields["date"]), _time("halts", fields["from"]), _time("halts", fields["to"])
        )
        if halt.start >= halt.end:
            raise BadPropertyValue(f"halts: 'from' must be before 'to', not {item!r}")
        halts.append(halt)
    return tuple(halts)


def parse_late_correction_days(value: Any) -> int:
    """Read ``late_correction_days``: for how many days after its close a session's bar is preliminary."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadPropertyValue(f"late_correction_days takes a number of days >= 0, not {value!r}")
    return value


def parse_splits(value: Any) -> tuple[Split, ...]:
    """Read ``split``: ``{"date", "ratio"}`` or a list of them (ratio > 0; below 1 is a reverse split)."""
    splits = []
    for item in _listed(value):
        fields = _object("split", item, ("date", "ratio"))
        ratio = fields["ratio"]
        try:
            exact = Decimal(str(ratio)) if not isinstance(ratio, bool) else Decimal(-1)
        except InvalidOperation:
            exact = Decimal(-1)
        if not isinstance(ratio, int | float) or not exact.is_finite() or exact <= 0 or exact == 1:
            raise BadPropertyValue(f"split: ratio takes a number > 0 other than 1, not {ratio!r}")
        splits.append(Split(_date("split", fields["date"]), exact))
    return tuple(sorted(splits, key=lambda split: split.effective))


def _positive_decimal(name: str, value: Any) -> Decimal:
    try:
        exact = (
            Decimal(str(value)) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    except InvalidOperation:
        exact = None
    if exact is None or not exact.is_finite() or exact <= 0:
        raise BadPropertyValue(f"{name} takes a number > 0, not {value!r}")
    return exact


def parse_dividends(value: Any) -> tuple[Dividend, ...]:
    """Read ``dividend``: ``{"date", "amount"}`` or a list (the ex-date; the amount per share as paid)."""
    dividends: dict[dt.date, Dividend] = {}
    for item in _listed(value):
        fields = _object("dividend", item, ("date", "amount"))
        ex_date = _date("dividend", fields["date"])
        if ex_date in dividends:
            raise BadPropertyValue(f"dividend: two on {ex_date.isoformat()}; give one with their sum")
        dividends[ex_date] = Dividend(ex_date, _positive_decimal("dividend: amount", fields["amount"]))
    return tuple(sorted(dividends.values(), key=lambda dividend: dividend.ex_date))


def parse_delisting(value: Any) -> Delisting:
    """Read ``delisting``: a date, or ``{"date", "error"}`` with error 162 (default) or 200."""
    if not isinstance(value, dict):
        return Delisting(_date("delisting", value))
    fields = _object("delisting", value, ("date",), ("error",))
    error = fields.get("error", 162)
    if error not in DELISTED_HISTORY_ERRORS or isinstance(error, bool):
        raise BadPropertyValue(f"delisting: error takes 162 or 200, not {error!r}")
    return Delisting(_date("delisting", fields["date"]), error)


def parse_con_id_change(value: Any) -> ConIdChange:
    """Read ``con_id_change``: ``{"date", "con_id"}`` (a positive integer)."""
    fields = _object("con_id_change", value, ("date", "con_id"))
    con_id = fields["con_id"]
    if isinstance(con_id, bool) or not isinstance(con_id, int) or con_id <= 0:
        raise BadPropertyValue(f"con_id_change: con_id takes a positive integer, not {con_id!r}")
    return ConIdChange(_date("con_id_change", fields["date"]), con_id)


#: Each market property's setting name, its parser and the field of :class:`MarketProperties` it sets.
PARSERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "illiquid_sessions": (parse_illiquid_sessions, "illiquid_sessions"),
    "illiquid_minutes": (parse_illiquid_minutes, "illiquid_minutes"),
    "halts": (parse_halts, "halts"),
    "late_correction_days": (parse_late_correction_days, "late_correction_days"),
    "split": (parse_splits, "splits"),
    "dividend": (parse_dividends, "dividends"),
    "delisting": (parse_delisting, "delisting"),
    "con_id_change": (parse_con_id_change, "con_id_change"),
}


def parse(name: str, value: Any) -> Any:
    """Return the value of market property ``name`` read from its JSON form.

    :raises BadPropertyValue: the value does not have the property's form.
    """
    return PARSERS[name][0](value)
