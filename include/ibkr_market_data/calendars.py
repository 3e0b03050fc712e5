"""Trading sessions of the exchanges we collect from, read from ``exchange_calendars``.

A *session* is one trading day of one exchange, named by its date in that exchange's time zone
(IB dates a daily bar the same way). Importing ``exchange_calendars`` (and pandas) and building a
calendar costs a process about a second, so the sessions are kept in a small file per calendar
(``IBKR_CALENDAR_CACHE_DIR``) that later processes read instead. See docs/daily-dag.md#calendars.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ibkr_market_data.errors import UnknownExchangeError

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

log = logging.getLogger(__name__)

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


#: Where the session tables are kept; default ``$XDG_CACHE_HOME/ibkr_market_data`` (``~/.cache``).
CACHE_DIR_VARIABLE = "IBKR_CALENDAR_CACHE_DIR"
#: A table is built again when it ends less than this ahead of today.
_TABLE_AHEAD = dt.timedelta(days=366)
_TABLE_FORMAT = 1


@cache
def _calendar(code: str) -> ExchangeCalendar:
    import exchange_calendars

    # The default calendar ends a year after today; build two years ahead so a scheduler that
    # runs for a year on one process never walks off its end.
    end = dt.date.today() + 2 * _TABLE_AHEAD
    return exchange_calendars.get_calendar(code, start=CALENDAR_START.isoformat(), end=end.isoformat())


def get_calendar(exchange: str) -> ExchangeCalendar:
    """Return the ``exchange_calendars`` calendar of an IB primary exchange (``ASX``, ``NASDAQ``, ...)."""
    return _calendar(calendar_code(exchange))


@dataclass(frozen=True)
class SessionTable:
    """One calendar's sessions in plain Python: each session's date, open and close (UTC seconds)."""

    code: str
    time_zone: str
    days: list[dt.date]
    opens: list[int]
    closes: list[int]

    def index(self, day: dt.date) -> int | None:
        """Return the position of session ``day``, or None when ``day`` is not a session."""
        position = bisect.bisect_left(self.days, day)
        return position if position < len(self.days) and self.days[position] == day else None

    def moment(self, times: list[int], day: dt.date) -> dt.datetime:
        """Return session ``day``'s entry of ``times`` (``opens`` or ``closes``) as an aware UTC datetime.

        :raises ValueError: ``day`` is not a session.
        """
        position = self.index(day)
        if position is None:
            raise ValueError(f"{day.isoformat()} is not a session of {self.code}")
        return dt.datetime.fromtimestamp(times[position], dt.UTC)

    def to_json(self, versions: Mapping[str, str]) -> dict[str, object]:
        """Return the table as the file keeps it, with the ``versions`` it was built from."""
        return {
            "format": _TABLE_FORMAT,
            **versions,
            "code": self.code,
            "time_zone": self.time_zone,
            "days": [day.toordinal() for day in self.days],
            "opens": self.opens,
            "closes": self.closes,
        }

    @classmethod
    def from_calendar(cls, code: str, calendar: ExchangeCalendar) -> SessionTable:
        """Return the table of an ``exchange_calendars`` calendar."""
        return cls(
            code=code,
            time_zone=str(calendar.tz),
            days=[session.date() for session in calendar.sessions],
            opens=[int(moment.timestamp()) for moment in calendar.opens],
            closes=[int(moment.timestamp()) for moment in calendar.closes],
        )


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Return the directory the session tables are kept in."""
    if configured := environ.get(CACHE_DIR_VARIABLE, "").strip():
        return Path(configured)
    base = environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "ibkr_market_data"


def _versions() -> dict[str, str]:
    # The sessions are exchange_calendars' and its holiday data's: a new release builds again.
    return {"exchange_calendars": metadata.version("exchange_calendars"), "start": CALENDAR_START.isoformat()}


@cache
def _table(code: str) -> SessionTable:
    """Return the session table of calendar ``code``: from its file when current, else built and kept."""
    path = cache_dir() / f"calendar-{code}.json"
    versions = _versions()
    try:
        stored = json.loads(path.read_text())
        if stored.get("format") == _TABLE_FORMAT and all(stored.get(k) == v for k, v in versions.items()):
            days = [dt.date.fromordinal(day) for day in stored["days"]]
            if days and days[-1] >= dt.date.today() + _TABLE_AHEAD:
                return SessionTable(code, stored["time_zone"], days, stored["opens"], stored["closes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent, unreadable or of another version: build it
    table = SessionTable.from_calendar(code, _calendar(code))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as out:
            json.dump(table.to_json(versions), out)
        os.replace(out.name, path)  # atomic: a process reading at the same time sees one whole file
    except OSError as exc:
        log.warning("Cannot keep the %s sessions in %s (%s); each process builds them", code, path, exc)
    return table


def session_table(exchange: str) -> SessionTable:
    """Return the session table of an IB primary exchange.

    :raises UnknownExchangeError: no calendar is known for ``exchange``.
    """
    return _table(calendar_code(exchange))


def time_zone(exchange: str) -> str:
    """Return the exchange's IANA time zone, e.g. ``Australia/Sydney``."""
    return session_table(exchange).time_zone


def is_session(exchange: str, day: dt.date) -> bool:
    """Check whether ``day`` is a session of ``exchange``; False outside the calendar's range."""
    return session_table(exchange).index(day) is not None


def sessions_between(exchange: str, start: dt.date, end: dt.date) -> list[dt.date]:
    """Return the sessions of ``exchange`` from ``start`` to ``end``, both inclusive; empty if start > end."""
    days = session_table(exchange).days
    return days[bisect.bisect_left(days, start) : bisect.bisect_right(days, end)]


def session_open(exchange: str, day: dt.date) -> dt.datetime:
    """Return when session ``day`` opens, as an aware UTC datetime.

    :raises ValueError: ``day`` is not a session of ``exchange``.
    """
    table = session_table(exchange)
    return table.moment(table.opens, day)


def session_close(exchange: str, day: dt.date) -> dt.datetime:
    """Return when session ``day`` closes (early closes included), as an aware UTC datetime.

    :raises ValueError: ``day`` is not a session of ``exchange``.
    """
    table = session_table(exchange)
    return table.moment(table.closes, day)


def previous_session(exchange: str, day: dt.date) -> dt.date | None:
    """Return the last session strictly before ``day``, or None before the calendar starts."""
    days = session_table(exchange).days
    position = bisect.bisect_left(days, day)
    return days[position - 1] if position else None


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
