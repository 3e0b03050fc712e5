"""Typed bars, their conversion from the IB client's ``BarData`` and their validation.

Prices become ``Decimal`` through the shortest ``repr`` of the client's float, which restores the
decimal IB sent (``0.0005``, ``654321.12``), so NUMERIC columns store them exactly.
See docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ibkr_market_data.errors import BrokenBarsError, InvalidBarError
from ibkr_market_data.timeframes import DAILY, TIMEFRAMES

if TYPE_CHECKING:
    from ibkr_market_data.ib_client import BarData


DAILY_BAR_SIZE = DAILY.bar_size

#: IB bar size -> the ``timeframe`` value stored in ``market_data`` (the original system's names),
#: for the bar sizes the collector requests.
TIMEFRAME_BY_BAR_SIZE: dict[str, str] = {tf.bar_size: name for name, tf in TIMEFRAMES.items()}

DAILY_TIMEFRAME = DAILY.name

#: Bar sizes where IB's hard historical pacing limits apply (bars of 30 seconds or less).
SMALL_BAR_SIZES = frozenset({"1 secs", "5 secs", "10 secs", "15 secs", "30 secs"})


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar.

    ``timestamp`` is the session date at midnight for a daily bar, else the bar's start (UTC, naive).
    """

    timestamp: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    wap: Decimal | None
    bar_count: int

    @property
    def session_date(self) -> dt.date:
        """The date of ``timestamp``: a daily bar's session."""
        return self.timestamp.date()


@lru_cache(maxsize=1 << 16, typed=True)
def _float_decimal(value: float) -> Decimal:
    # A day of minute bars repeats the same few hundred prices: each is converted once.
    return Decimal(repr(value))


def _decimal(value: Any, field: str, when: object) -> Decimal:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidBarError(f"bar {when}: {field} is {value!r}, not a finite number")
    return _float_decimal(value) if isinstance(value, float) else Decimal(value)


def _timestamp(value: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    return dt.datetime.combine(value, dt.time())


def bar_from_ib(ib_bar: BarData) -> Bar:
    """Convert one ``BarData``.

    :raises InvalidBarError: a field is not a finite number.
    """
    when = ib_bar.date
    volume = ib_bar.volume
    if volume is None or (isinstance(volume, float) and not math.isfinite(volume)):
        raise InvalidBarError(f"bar {when}: volume is {volume!r}, not a finite number")
    wap = ib_bar.average
    return Bar(
        timestamp=_timestamp(when),
        open=_decimal(ib_bar.open, "open", when),
        high=_decimal(ib_bar.high, "high", when),
        low=_decimal(ib_bar.low, "low", when),
        close=_decimal(ib_bar.close, "close", when),
        volume=int(volume),
        wap=None if wap is None or wap < 0 or not math.isfinite(wap) else _decimal(wap, "wap", when),
        bar_count=max(int(ib_bar.barCount), 0),
    )


def validate_bar(bar: Bar) -> None:
    """Raise InvalidBarError naming the first rule ``bar`` breaks."""
    low, high = bar.low, bar.high
    if (
        bar.volume >= 0
        and all(price.is_finite() for price in (low, high, bar.open, bar.close))
        and low > 0
        and low <= bar.open <= high
        and low <= bar.close <= high
    ):
        return  # every rule below holds: a whole response is checked without building its messages
    when = bar.timestamp.isoformat()
    prices = {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
    for name, price in prices.items():
        if not price.is_finite() or price <= 0:
            raise InvalidBarError(f"bar {when}: {name} {price} is not a positive price")
    if bar.high < bar.low:
        raise InvalidBarError(f"bar {when}: high {bar.high} is below low {bar.low}")
    for name in ("open", "close"):
        if not bar.low <= prices[name] <= bar.high:
            raise InvalidBarError(f"bar {when}: {name} {prices[name]} is outside low..high")
    if bar.volume < 0:
        raise InvalidBarError(f"bar {when}: volume {bar.volume} is negative")


def bars_from_ib(ib_bars: Iterable[BarData]) -> list[Bar]:
    """Convert and validate a whole response.

    Broken bars raise BrokenBarsError carrying the valid ones: the caller stores those and fails
    the attempt naming the broken ones, so the next run asks only for those sessions again.
    """
    valid: list[Bar] = []
    broken: list[str] = []
    for ib_bar in ib_bars:
        try:
            bar = bar_from_ib(ib_bar)
            validate_bar(bar)
        except InvalidBarError as exc:
            broken.append(str(exc))
            continue
        valid.append(bar)
    if broken:
        raise BrokenBarsError(broken, valid)
    return valid


def latest_per_timestamp(bars: Sequence[Bar]) -> list[Bar]:
    """Return ``bars`` with one bar per timestamp, the last one IB sent, in the order first seen.

    A response naming a timestamp twice would otherwise fail the UPSERT (one statement cannot
    write a row twice), and every retry with it.
    """
    latest: dict[dt.datetime, Bar] = {}
    for bar in bars:
        latest[bar.timestamp] = bar
    return list(latest.values())


def adds_up_to(bars: Sequence[Bar], daily: Bar | None) -> bool:
    """Check whether a session's intraday ``bars`` add up to its ``daily`` bar (OHLC and volume).

    IB builds both from the same trades, so a session whose answer lost a bar (a truncated or split
    answer) no longer adds up, while one with a halt or minutes without a trade still does.
    """
    if not bars or daily is None:
        return False
    ordered = sorted(bars, key=lambda bar: bar.timestamp)
    return (
        ordered[0].open == daily.open
        and max(bar.high for bar in ordered) == daily.high
        and min(bar.low for bar in ordered) == daily.low
        and ordered[-1].close == daily.close
        and sum(bar.volume for bar in ordered) == daily.volume
    )
