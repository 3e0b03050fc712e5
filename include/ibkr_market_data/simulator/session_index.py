"""Fast look-ups of one exchange's sessions, built once from :mod:`ibkr_market_data.calendars`.

``exchange_calendars`` answers through pandas, which costs tens of microseconds per call; the
simulator asks for sessions on every request. :class:`SessionIndex` copies each exchange's
sessions with their open and close instants (epoch seconds, UTC) into plain lists once, so a
request is answered by bisection. The session dates are exactly those of
:func:`ibkr_market_data.calendars.sessions_between`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from functools import cache

from ibkr_market_data import calendars


@dataclass(frozen=True)
class SessionIndex:
    """Sessions of one exchange, in date order, with parallel lists of open and close instants."""

    exchange: str
    dates: tuple[dt.date, ...]
    opens: tuple[float, ...]
    closes: tuple[float, ...]

    def position(self, day: dt.date) -> int | None:
        """Index of session ``day``, or None if ``day`` is not a session."""
        at = bisect.bisect_left(self.dates, day)
        if at < len(self.dates) and self.dates[at] == day:
            return at
        return None

    def between(self, start: dt.date, end: dt.date) -> tuple[int, int]:
        """Index range [lo, hi) of the sessions dated ``start`` to ``end``, both inclusive."""
        return bisect.bisect_left(self.dates, start), bisect.bisect_right(self.dates, end)

    def closing_within(self, after: float, until: float) -> tuple[int, int]:
        """Index range [lo, hi) of the sessions whose close is in the interval (after, until]."""
        return bisect.bisect_right(self.closes, after), bisect.bisect_right(self.closes, until)

    def overlapping(self, start: float, end: float) -> tuple[int, int]:
        """Index range [lo, hi) of the sessions that close after ``start`` and open before ``end``."""
        return bisect.bisect_right(self.closes, start), bisect.bisect_left(self.opens, end)


@cache
def session_index(exchange: str) -> SessionIndex:
    """The :class:`SessionIndex` of an IB primary exchange, built on first use (about 1 s)."""
    calendar = calendars.get_calendar(exchange)
    first = calendar.first_session.date()
    last = calendar.last_session.date()
    dates = tuple(calendars.sessions_between(exchange, first, last))
    labels = [day.isoformat() for day in dates]
    opens = calendar.opens.loc[labels]
    closes = calendar.closes.loc[labels]
    return SessionIndex(
        exchange=exchange.upper(),
        dates=dates,
        opens=tuple(float(ts.timestamp()) for ts in opens),
        closes=tuple(float(ts.timestamp()) for ts in closes),
    )
