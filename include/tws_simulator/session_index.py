"""Each exchange's sessions, read once from ``exchange_calendars`` into plain lists.

``exchange_calendars`` answers through pandas, too slow to ask on every request, so a request is
answered by bisection of these lists. See docs/simulator.md#sessions.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from functools import cache

#: IB primary exchange -> ``exchange_calendars`` code; the exchanges a universe may list on.
CALENDAR_CODES: dict[str, str] = {
    "ASX": "XASX",
    "NASDAQ": "XNAS",
    "NYSE": "XNYS",
    "ARCA": "XNYS",
    "AMEX": "XNYS",
    "BATS": "XNYS",
}

#: First session the simulator serves; every symbol listed earlier has bars from here on.
CALENDAR_START = dt.date(2005, 1, 1)


class UnknownExchange(ValueError):
    """The simulator has no calendar for the exchange."""


@dataclass(frozen=True)
class SessionIndex:
    """Sessions of one exchange, in date order, with parallel lists of open and close instants."""

    exchange: str
    time_zone: str
    dates: tuple[dt.date, ...]
    opens: tuple[float, ...]
    closes: tuple[float, ...]

    def position(self, day: dt.date) -> int | None:
        """Return the index of session ``day``, or None if ``day`` is not a session."""
        at = bisect.bisect_left(self.dates, day)
        if at < len(self.dates) and self.dates[at] == day:
            return at
        return None

    def between(self, start: dt.date, end: dt.date) -> tuple[int, int]:
        """Return the index range [lo, hi) of the sessions dated ``start`` to ``end``, both inclusive."""
        return bisect.bisect_left(self.dates, start), bisect.bisect_right(self.dates, end)

    def closing_within(self, after: float, until: float) -> tuple[int, int]:
        """Return the index range [lo, hi) of the sessions whose close is in (after, until]."""
        return bisect.bisect_right(self.closes, after), bisect.bisect_right(self.closes, until)

    def containing(self, instant: float) -> int | None:
        """Return the index of the session whose regular hours ``[open, close)`` hold ``instant``, or None."""
        at = bisect.bisect_right(self.opens, instant) - 1
        if at >= 0 and instant < self.closes[at]:
            return at
        return None

    def overlapping(self, start: float, end: float) -> tuple[int, int]:
        """Return the index range [lo, hi) of the sessions closing after ``start``, opening before ``end``."""
        return bisect.bisect_right(self.closes, start), bisect.bisect_left(self.opens, end)


@cache
def session_index(exchange: str) -> SessionIndex:
    """Return the :class:`SessionIndex` of an IB primary exchange, built on first use (about 1 s).

    Sessions run from :data:`CALENDAR_START` to two years after today, so a simulator that serves
    for a year never walks off the end.
    """
    import exchange_calendars

    code = CALENDAR_CODES.get(exchange.upper())
    if code is None:
        raise UnknownExchange(
            f"No calendar for exchange {exchange!r}; known: {', '.join(sorted(CALENDAR_CODES))}"
        )
    end = dt.date.today() + dt.timedelta(days=2 * 366)
    calendar = exchange_calendars.get_calendar(code, start=CALENDAR_START.isoformat(), end=end.isoformat())
    sessions = calendar.sessions
    return SessionIndex(
        exchange=exchange.upper(),
        time_zone=str(calendar.tz),
        dates=tuple(ts.date() for ts in sessions),
        opens=tuple(float(ts.timestamp()) for ts in calendar.opens.loc[sessions]),
        closes=tuple(float(ts.timestamp()) for ts in calendar.closes.loc[sessions]),
    )
