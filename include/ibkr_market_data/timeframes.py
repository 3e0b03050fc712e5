"""The timeframes we collect, IB's longest request per bar size, and which symbols get which.

A daily bar is dated by its session; an intraday bar by its start in UTC, its session being that
start's date in the exchange's zone. See docs/intraday.md.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ibkr_market_data.errors import UnknownTimeframeError


@dataclass(frozen=True)
class Timeframe:
    """One timeframe: its stored name, IB's bar size, and the longest window one request may cover."""

    name: str
    bar_size: str
    #: Seconds of one bar; None for daily bars, which IB dates by session.
    bar_seconds: int | None
    #: Calendar days one request may span at most (IB's "Step Sizes" table, in docs/intraday.md).
    max_request_days: int

    @property
    def intraday(self) -> bool:
        """Whether the bars are shorter than a session."""
        return self.bar_seconds is not None


DAILY = Timeframe("1day", "1 day", None, 365)
HOURLY = Timeframe("1hour", "1 hour", 3600, 28)
FIVE_MINUTES = Timeframe("5min", "5 mins", 300, 7)
ONE_MINUTE = Timeframe("1min", "1 min", 60, 1)

#: Every timeframe we collect, by its ``market_data.timeframe`` name, longest bars first.
TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in (DAILY, HOURLY, FIVE_MINUTES, ONE_MINUTE)}
INTRADAY_NAMES = tuple(name for name, tf in TIMEFRAMES.items() if tf.intraday)

#: The run param's value for "each symbol's configured timeframes" (``TimeframePolicy``).
CONFIGURED = "configured"

INTRADAY_TIMEFRAMES_VARIABLE = "IBKR_INTRADAY_TIMEFRAMES"
INTRADAY_MAX_PRIORITY_VARIABLE = "IBKR_INTRADAY_MAX_PRIORITY"
DEFAULT_INTRADAY_MAX_PRIORITY = 1


def timeframe(name: str) -> Timeframe:
    """Return the ``Timeframe`` called ``name``.

    :raises UnknownTimeframeError: no timeframe has that name; the message lists the choices.
    """
    try:
        return TIMEFRAMES[name.strip().lower()]
    except KeyError:
        raise UnknownTimeframeError(
            f"unknown timeframe {name!r}; choose from {', '.join(TIMEFRAMES)}"
        ) from None


def by_bar_size(bar_size: str) -> Timeframe:
    """Return the ``Timeframe`` that collects IB's ``bar_size``."""
    for candidate in TIMEFRAMES.values():
        if candidate.bar_size == bar_size:
            return candidate
    raise UnknownTimeframeError(f"no timeframe collects IB bar size {bar_size!r}")


def parse_names(text: str) -> list[Timeframe]:
    """Return the timeframes of comma-separated names, in ``TIMEFRAMES`` order, without repeats."""
    wanted = {timeframe(part).name for part in text.split(",") if part.strip()}
    return [tf for name, tf in TIMEFRAMES.items() if name in wanted]


@dataclass(frozen=True)
class TimeframePolicy:
    """Which timeframes a symbol gets: daily for all, ``intraday`` up to ``intraday_max_priority``."""

    intraday: tuple[Timeframe, ...] = (HOURLY, FIVE_MINUTES, ONE_MINUTE)
    intraday_max_priority: int = DEFAULT_INTRADAY_MAX_PRIORITY

    def for_priority(self, priority: int) -> list[Timeframe]:
        """Return the timeframes of a symbol of ``priority``."""
        if priority <= self.intraday_max_priority:
            return [DAILY, *self.intraday]
        return [DAILY]


def policy_from_env(environ: Mapping[str, str] = os.environ) -> TimeframePolicy:
    """Return the policy ``IBKR_INTRADAY_TIMEFRAMES`` and ``IBKR_INTRADAY_MAX_PRIORITY`` configure.

    :raises UnknownTimeframeError: a variable holds a bad value; the message names both.
    """
    names = environ.get(INTRADAY_TIMEFRAMES_VARIABLE)
    intraday = TimeframePolicy.intraday
    if names is not None:
        try:
            parsed = parse_names(names)
        except UnknownTimeframeError as exc:
            raise UnknownTimeframeError(f"{INTRADAY_TIMEFRAMES_VARIABLE}={names!r}: {exc}") from None
        if DAILY in parsed:
            raise UnknownTimeframeError(
                f"{INTRADAY_TIMEFRAMES_VARIABLE}={names!r}: {DAILY.name} is collected for every symbol; "
                f"list intraday timeframes only ({', '.join(INTRADAY_NAMES)})"
            )
        intraday = tuple(parsed)
    priority_text = environ.get(INTRADAY_MAX_PRIORITY_VARIABLE, "").strip()
    if not priority_text:
        return TimeframePolicy(intraday, DEFAULT_INTRADAY_MAX_PRIORITY)
    if not priority_text.isdigit():
        raise UnknownTimeframeError(
            f"{INTRADAY_MAX_PRIORITY_VARIABLE}={priority_text!r}: give a whole number "
            "(symbols of that priority or higher get intraday bars; 0: none)"
        )
    return TimeframePolicy(intraday, int(priority_text))


def expected_bars(tf: Timeframe, session_open: dt.datetime, session_close: dt.datetime, zone: str) -> int:
    """Return how many ``tf`` bars IB cuts a session from ``session_open`` to ``session_close`` (aware) into.

    Bars are aligned on multiples of their size from local midnight, so a 09:30-16:00 session
    has 390 one-minute bars, 78 five-minute bars and 7 hourly bars (09:30, 10:00, ..., 15:00); an
    early close at 13:00 has 210, 42 and 4.
    """
    if tf.bar_seconds is None:
        return 1
    local_open = session_open.astimezone(ZoneInfo(zone))
    midnight = dt.datetime.combine(local_open.date(), dt.time(0), ZoneInfo(zone)).timestamp()
    first = math.floor((session_open.timestamp() - midnight) / tf.bar_seconds)
    last = math.ceil((session_close.timestamp() - midnight) / tf.bar_seconds)
    return max(0, last - first)


def session_date(timestamp: dt.datetime, zone: str) -> dt.date:
    """Return the session of an intraday bar (naive UTC start): its date in the exchange's zone."""
    return timestamp.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).date()


def request_duration(days: int, tf: Timeframe) -> str:
    """Return IB's ``durationStr`` for ``days`` calendar days (``N D``, or ``N Y`` for long daily windows)."""
    if days > tf.max_request_days:
        raise ValueError(f"{days} days of {tf.name} bars exceed one request ({tf.max_request_days} days)")
    return f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"
