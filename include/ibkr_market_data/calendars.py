"""Trading sessions of the exchanges we collect from, read from ``exchange_calendars``.

A *session* is one trading day of one exchange, named by its date in that exchange's time zone
(IB dates a daily bar the same way). ``exchange_calendars`` costs ~3 s to import, so it is imported
lazily, once per process, never at DAG-parse time. See docs/daily-dag.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

from ibkr_market_data.errors import UnknownExchangeError

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

#: IB primary exchange -> exchange_calendars calendar code.
CALENDAR_CODES: dict[str, str] = {
    "ASX": "XASX",
    "NASDAQ": "XNAS",
    "NYSE": "XNYS",
    "ARCA": "XNYS",
    "AMEX": "XNYS",
    "BATS": "XNYS",
}

#: First session a calendar is built from; older history is not collected.
CALENDAR_START = dt.date(2005, 1, 1)


def calendar_code(exchange: str) -> str:
    """Return the ``exchange_calendars`` code of IB primary exchange ``exchange``.

    :raises UnknownExchangeError: no calendar is known for ``exchange``.
    """
    try:
        return CALENDAR_CODES[exchange.upper()]
    except KeyError:
        raise UnknownExchangeError(
            f"No trading calendar for exchange {exchange!r}; known: {', '.join(sorted(CALENDAR_CODES))}"
        ) from None


@cache
def _calendar(code: str) -> ExchangeCalendar:
    import exchange_calendars

    # The default calendar ends a year after today; build two years ahead so a scheduler that
    # runs for a year on one process never walks off its end.
    end = dt.date.today() + dt.timedelta(days=2 * 366)
    return exchange_calendars.get_calendar(code, start=CALENDAR_START.isoformat(), end=end.isoformat())


def get_calendar(exchange: str) -> ExchangeCalendar:
    """Return the ``exchange_calendars`` calendar of an IB primary exchange (``ASX``, ``NASDAQ``, ...)."""
    return _calendar(calendar_code(exchange))


def time_zone(exchange: str) -> str:
    """Return the exchange's IANA time zone, e.g. ``Australia/Sydney``."""
    return str(get_calendar(exchange).tz)


def is_session(exchange: str, day: dt.date) -> bool:
    """Check whether ``day`` is a session of ``exchange``; False outside the calendar's range."""
    calendar = get_calendar(exchange)
    if not calendar.first_session.date() <= day <= calendar.last_session.date():
        return False  # exchange_calendars raises there (and overflows before 1677)
    return bool(calendar.is_session(day.isoformat()))


def sessions_between(exchange: str, start: dt.date, end: dt.date) -> list[dt.date]:
    """Return the sessions of ``exchange`` from ``start`` to ``end``, both inclusive; empty if start > end."""
    if start > end:
        return []
    calendar = get_calendar(exchange)
    first = max(start, calendar.first_session.date())
    last = min(end, calendar.last_session.date())
    if first > last:
        return []
    return [ts.date() for ts in calendar.sessions_in_range(first.isoformat(), last.isoformat())]


def session_open(exchange: str, day: dt.date) -> dt.datetime:
    """Return when session ``day`` opens, as an aware UTC datetime."""
    return get_calendar(exchange).session_open(day.isoformat()).to_pydatetime()


def session_close(exchange: str, day: dt.date) -> dt.datetime:
    """Return when session ``day`` closes (early closes included), as an aware UTC datetime."""
    return get_calendar(exchange).session_close(day.isoformat()).to_pydatetime()


def previous_session(exchange: str, day: dt.date) -> dt.date | None:
    """Return the last session strictly before ``day``, or None before the calendar starts."""
    calendar = get_calendar(exchange)
    earlier = sessions_between(exchange, calendar.first_session.date(), day - dt.timedelta(days=1))
    return earlier[-1] if earlier else None


def latest_closed_session(exchange: str, as_of: dt.datetime) -> dt.date | None:
    """Return the latest session of ``exchange`` that has closed by ``as_of`` (aware)."""
    local_day = as_of.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    for day in reversed(sessions_between(exchange, local_day - dt.timedelta(days=14), local_day)):
        if session_close(exchange, day) <= as_of:
            return day
    return previous_session(exchange, local_day - dt.timedelta(days=14))


def latest_completed_trading_date(exchanges: Iterable[str], as_of: dt.datetime) -> dt.date:
    """Return the latest date that is a session of some exchange and has closed on every exchange trading it.

    This is the trading date a collection run started at ``as_of`` should collect by default.
    """
    exchanges = sorted(set(exchanges))
    if not exchanges:
        raise ValueError("latest_completed_trading_date needs at least one exchange")
    candidates = sorted(
        {day for exchange in exchanges if (day := latest_closed_session(exchange, as_of)) is not None},
        reverse=True,
    )
    for day in candidates:
        if all(session_close(exchange, day) <= as_of for exchange in exchanges if is_session(exchange, day)):
            return day
    raise ValueError(f"No completed session before {as_of.isoformat()} for {', '.join(exchanges)}")
