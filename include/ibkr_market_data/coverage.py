"""Compare what should be stored with what is: coverage per (trading date, listing exchange), freshness.

A (symbol, session) is complete when its bar is stored or IB's "no data" is settled. The dashboard,
the freshness watchdog and ``make report`` read coverage from here. See docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibkr_market_data import calendars, repository
from ibkr_market_data.errors import InvalidRangeError, UnknownExchangeError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: A session's data is due this long after its close (``IBKR_FRESHNESS_DELAY_MINUTES`` overrides it).
DEFAULT_FRESHNESS_DELAY = dt.timedelta(hours=3)
#: Longest range the coverage views accept, in days: a year of sessions and some margin.
MAX_RANGE_DAYS = 400
#: Trading dates the views show when no range is given.
DEFAULT_TRADING_DATES = 30


@dataclass(frozen=True)
class CoverageRow:
    """One trading date of one listing exchange: symbols expected, stored, failed and without data."""

    date: dt.date
    exchange: str
    expected: int
    stored: int
    failed: int
    no_data: int

    @property
    def missing(self) -> int:
        """The symbols neither stored nor known to have no data (failed ones included)."""
        return max(self.expected - self.stored - self.no_data, 0)

    @property
    def complete(self) -> bool:
        """Whether no symbol is missing."""
        return self.missing == 0

    def as_json(self) -> dict[str, object]:
        """Return the row as a JSON object."""
        return {
            "date": self.date.isoformat(),
            "exchange": self.exchange,
            "expected": self.expected,
            "stored": self.stored,
            "failed": self.failed,
            "no_data": self.no_data,
        }


@dataclass(frozen=True)
class Freshness:
    """An exchange's latest complete session against the latest one that should be complete by now."""

    exchange: str
    latest_complete: dt.date | None
    due: dt.date | None
    due_missing: int

    @property
    def status(self) -> str:
        """The state in one word or two: ``fresh``, ``late`` or ``nothing due``."""
        if self.due is None:
            return "nothing due"
        if self.latest_complete is not None and self.latest_complete >= self.due:
            return "fresh"
        return "late"

    def as_json(self) -> dict[str, object]:
        """Return the freshness as a JSON object."""
        return {
            "exchange": self.exchange,
            "latest_complete": self.latest_complete.isoformat() if self.latest_complete else None,
            "due": self.due.isoformat() if self.due else None,
            "due_missing": self.due_missing,
            "status": self.status,
        }


def freshness_delay() -> dt.timedelta:
    """Return how long after a session's close its data is due (``IBKR_FRESHNESS_DELAY_MINUTES``)."""
    raw = os.environ.get("IBKR_FRESHNESS_DELAY_MINUTES", "").strip()
    if not raw:
        return DEFAULT_FRESHNESS_DELAY
    try:
        minutes = int(raw)
    except ValueError:
        minutes = -1
    if minutes < 0:
        log.warning(
            "IBKR_FRESHNESS_DELAY_MINUTES=%r is not a whole number of minutes; using %s",
            raw,
            DEFAULT_FRESHNESS_DELAY,
        )
        return DEFAULT_FRESHNESS_DELAY
    return dt.timedelta(minutes=minutes)


def check_report_range(start: dt.date, end: dt.date) -> None:
    """Refuse a reversed range, or one longer than ``MAX_RANGE_DAYS``.

    :raises InvalidRangeError: the range is reversed or too long; the message says the fix.
    """
    if start > end:
        raise InvalidRangeError(f"'from' ({start}) is after 'to' ({end}); give from <= to")
    if (end - start).days > MAX_RANGE_DAYS:
        raise InvalidRangeError(
            f"{start}..{end} spans {(end - start).days} days; at most {MAX_RANGE_DAYS} at once"
        )


def known_exchanges(exchanges: Iterable[str]) -> list[str]:
    """Return those of ``exchanges`` that have a calendar; the others are logged and left out."""
    known = []
    for exchange in sorted(set(exchanges)):
        try:
            calendars.calendar_code(exchange)
        except UnknownExchangeError as exc:
            log.warning("Left out of coverage: %s", exc)
            continue
        known.append(exchange)
    return known


def trading_dates(exchanges: Sequence[str], start: dt.date, end: dt.date) -> list[dt.date]:
    """Return the dates from ``start`` to ``end`` that any of ``exchanges`` trades."""
    return sorted({day for exchange in exchanges for day in calendars.sessions_between(exchange, start, end)})


def default_range(
    exchanges: Sequence[str], today: dt.date, count: int = DEFAULT_TRADING_DATES
) -> tuple[dt.date, dt.date]:
    """Return the range of the last ``count`` trading dates up to ``today`` (of any of ``exchanges``)."""
    days = trading_dates(exchanges, today - dt.timedelta(days=2 * count + 14), today)[-count:]
    return (days[0], days[-1]) if days else (today, today)


def expected_count(
    symbol_counts: Iterable[tuple[str, dt.date | None, Sequence[tuple[dt.date | None, dt.date | None]], int]],
    exchange: str,
    day: dt.date,
) -> int:
    """Count the symbols of ``exchange`` expected on ``day``.

    That is those whose data starts on or before it, inside one of their periods (none: always).

    :param symbol_counts: (listing exchange, first available date, periods, count), as
        ``repository.expected_symbols`` returns them.
    """
    return sum(
        count
        for listed_on, first, periods, count in symbol_counts
        if listed_on == exchange
        and (first is None or first <= day)
        and (not periods or any(_within(day, period) for period in periods))
    )


def _within(day: dt.date, period: tuple[dt.date | None, dt.date | None]) -> bool:
    first, last = period
    return (first is None or first <= day) and (last is None or day <= last)


def coverage(conn: psycopg.Connection, start: dt.date, end: dt.date) -> list[CoverageRow]:
    """Return one row per (trading date, listing exchange of an expected symbol) from ``start`` to ``end``.

    A symbol is expected inside its universe memberships while active, and up to its last session
    once delisted; a symbol removed from the universe files is expected nowhere.

    :raises InvalidRangeError: the range is reversed or too long.
    """
    check_report_range(start, end)
    symbol_counts = repository.expected_symbols(conn)
    counts = repository.coverage_counts(conn, start, end)
    rows = []
    for exchange in known_exchanges(listed_on for listed_on, _, _, _ in symbol_counts):
        for day in calendars.sessions_between(exchange, start, end):
            found = counts.get((day, exchange), {})
            rows.append(
                CoverageRow(
                    date=day,
                    exchange=exchange,
                    expected=expected_count(symbol_counts, exchange, day),
                    stored=found.get("stored", 0),
                    failed=found.get("failed", 0),
                    no_data=found.get("no_data", 0),
                )
            )
    return sorted(rows, key=lambda row: (row.date, row.exchange))


def due_session(exchange: str, as_of: dt.datetime, delay: dt.timedelta) -> dt.date | None:
    """Return the latest session of ``exchange`` whose data is due by ``as_of`` (closed ``delay`` ago)."""
    return calendars.latest_closed_session(exchange, as_of - delay)


def freshness(
    conn: psycopg.Connection, as_of: dt.datetime, delay: dt.timedelta, lookback_days: int = 45
) -> list[Freshness]:
    """Return, per listing exchange, the latest complete session, the latest due one and what it lacks."""
    end = as_of.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    rows = coverage(conn, end - dt.timedelta(days=lookback_days), end)
    result = []
    for exchange in sorted({row.exchange for row in rows}):
        mine = [row for row in rows if row.exchange == exchange and row.expected > 0]
        due = due_session(exchange, as_of, delay)
        complete = [row.date for row in mine if row.complete and (due is None or row.date <= due)]
        due_row = next((row for row in mine if row.date == due), None)
        result.append(
            Freshness(
                exchange=exchange,
                latest_complete=max(complete) if complete else None,
                due=due,
                due_missing=due_row.missing if due_row else 0,
            )
        )
    return result


def overdue_gaps(
    conn: psycopg.Connection, as_of: dt.datetime, delay: dt.timedelta, lookback_days: int = 7
) -> list[CoverageRow]:
    """Return the sessions of the last ``lookback_days`` that are due by ``as_of`` and still incomplete."""
    end = as_of.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    rows = coverage(conn, end - dt.timedelta(days=lookback_days), end)
    due = {exchange: due_session(exchange, as_of, delay) for exchange in {row.exchange for row in rows}}
    return [
        row
        for row in rows
        if not row.complete and (due_day := due[row.exchange]) is not None and row.date <= due_day
    ]
