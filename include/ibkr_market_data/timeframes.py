"""The timeframes we collect, IB's longest request per bar size, and which symbols get which.

``market_data.timeframe`` keeps the original system's names (``1day``, ``1hour``, ``5min``,
``1min``). A daily bar is dated by its session (midnight of the session date); an intraday bar is
stamped with its **start time in UTC** (naive ``TIMESTAMP``), regular trading hours only, so a
session of ASX (10:00-16:00 Sydney) spans two UTC dates and is named by its Sydney date.

Longest duration per request
    IB's TWS API documentation, *Historical Bar Data*, table "Step Sizes"
    (https://interactivebrokers.github.io/tws-api/historical_limitations.html#hd_step_sizes): a
    duration of ``1 D`` allows bar sizes from 1 min, ``1 W`` from 3 mins, ``1 M`` from 30 mins,
    ``1 Y`` from 1 day. So one request carries at most 1 day of 1-minute bars, 7 days of 5-minute
    bars, a month of hourly bars (28 days here: a calendar month is never shorter) and a year of
    daily bars; a longer request is refused with 162 "Time length exceed max.". A backfill splits
    its windows by these (``backfill.plan_requests``).

Which symbols get which
    Daily bars for every active symbol; the intraday timeframes of ``IBKR_INTRADAY_TIMEFRAMES``
    (default ``1min,5min,1hour``; empty: none) for the symbols whose priority is at most
    ``IBKR_INTRADAY_MAX_PRIORITY`` (default 1, the high-priority ones; 0: none).
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
    #: Calendar days one request may span at most (IB's step sizes, see the module docstring).
    max_request_days: int

    @property
    def intraday(self) -> bool:
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
    """The ``Timeframe`` called ``name``; UnknownTimeframeError naming the choices otherwise."""
    try:
        return TIMEFRAMES[name.strip().lower()]
    except KeyError:
        raise UnknownTimeframeError(
            f"unknown timeframe {name!r}; choose from {', '.join(TIMEFRAMES)}"
        ) from None


def by_bar_size(bar_size: str) -> Timeframe:
    for candidate in TIMEFRAMES.values():
        if candidate.bar_size == bar_size:
            return candidate
    raise UnknownTimeframeError(f"no timeframe collects IB bar size {bar_size!r}")


def parse_names(text: str) -> list[Timeframe]:
    """Comma-separated timeframe names, in ``TIMEFRAMES`` order, without repeats."""
    wanted = {timeframe(part).name for part in text.split(",") if part.strip()}
    return [tf for name, tf in TIMEFRAMES.items() if name in wanted]


@dataclass(frozen=True)
class TimeframePolicy:
    """Which timeframes a symbol gets: daily for all, ``intraday`` for priority <= ``intraday_max_priority``."""

    intraday: tuple[Timeframe, ...] = (HOURLY, FIVE_MINUTES, ONE_MINUTE)
    intraday_max_priority: int = DEFAULT_INTRADAY_MAX_PRIORITY

    def for_priority(self, priority: int) -> list[Timeframe]:
        if priority <= self.intraday_max_priority:
            return [DAILY, *self.intraday]
        return [DAILY]


def policy_from_env(environ: Mapping[str, str] = os.environ) -> TimeframePolicy:
    """The policy ``IBKR_INTRADAY_TIMEFRAMES`` and ``IBKR_INTRADAY_MAX_PRIORITY`` configure.

    Raises UnknownTimeframeError naming the variable and the bad value.
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
    """Bars of ``tf`` in a session from ``session_open`` to ``session_close`` (aware), as IB cuts them.

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
    """The session an intraday bar (naive UTC start) belongs to: its date in the exchange's zone."""
    return timestamp.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).date()


def request_duration(days: int, tf: Timeframe) -> str:
    """IB's ``durationStr`` for a window of ``days`` calendar days (``N D``, or ``N Y`` for long daily windows)."""
    if days > tf.max_request_days:
        raise ValueError(f"{days} days of {tf.name} bars exceed one request ({tf.max_request_days} days)")
    return f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"
