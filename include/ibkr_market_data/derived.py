"""Build 5-minute and hourly bars from stored 1-minute bars, and pick the sessions IB still answers.

Pure: the settings, the aggregation (IB's definition of a bar) and the sampled cross-check's
choice and comparison. See docs/intraday.md#derived-bars.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from ibkr_market_data.bars import Bar
from ibkr_market_data.errors import UnknownTimeframeError
from ibkr_market_data.timeframes import FIVE_MINUTES, HOURLY, ONE_MINUTE, Timeframe

DERIVE_VARIABLE = "IBKR_DERIVE_INTRADAY"
CROSS_CHECK_VARIABLE = "IBKR_DERIVE_CROSS_CHECK_PERCENT"
DEFAULT_CROSS_CHECK_PERCENT = Decimal(5)
#: The timeframes that can be built from 1-minute bars: their sizes are whole minutes.
DERIVABLE = (HOURLY, FIVE_MINUTES)
#: ``market_data.wap`` is NUMERIC(20,8): a derived WAP is rounded as PostgreSQL would store it.
_WAP_PLACES = Decimal("1e-8")
_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


@dataclass(frozen=True)
class DeriveSettings:
    """Whether 5min/1hour bars are built from 1-minute bars, and the share still asked of IB."""

    enabled: bool = True
    cross_check_percent: Decimal = DEFAULT_CROSS_CHECK_PERCENT

    def asks_ib(self, symbol: str, session: dt.date) -> bool:
        """Return whether the cross-check asks IB for ``symbol``'s 5min/1hour bars of ``session``.

        Deterministic (a hash of symbol and session), so every rerun of a date picks the same ones.
        """
        digest = hashlib.blake2b(f"{symbol}|{session.isoformat()}".encode(), digest_size=8).digest()
        slot = int.from_bytes(digest) % 10_000  # hundredths of a percent
        return slot < self.cross_check_percent * 100


def settings_from_env(environ: Mapping[str, str] = os.environ) -> DeriveSettings:
    """Return the settings ``IBKR_DERIVE_INTRADAY`` and ``IBKR_DERIVE_CROSS_CHECK_PERCENT`` configure.

    :raises UnknownTimeframeError: a variable holds a bad value; the message names it and the choices.
    """
    switch = environ.get(DERIVE_VARIABLE, "").strip().lower()
    if switch and switch not in _ON | _OFF:
        raise UnknownTimeframeError(f"{DERIVE_VARIABLE}={switch!r}: give on or off")
    percent_text = environ.get(CROSS_CHECK_VARIABLE, "").strip().rstrip("%").strip()
    percent = DEFAULT_CROSS_CHECK_PERCENT
    if percent_text:
        try:
            percent = Decimal(percent_text)
        except ArithmeticError:
            percent = Decimal(-1)
        if not percent.is_finite() or not 0 <= percent <= 100:
            raise UnknownTimeframeError(
                f"{CROSS_CHECK_VARIABLE}={percent_text!r}: give a percentage from 0 to 100 "
                "(the share of symbol-sessions whose 5min/1hour bars are still asked of IB)"
            )
    return DeriveSettings(enabled=switch not in _OFF, cross_check_percent=percent)


def aggregate(minutes: Sequence[Bar], tf: Timeframe, zone: str, session_open: dt.datetime) -> list[Bar]:
    """Return the ``tf`` bars of ``minutes`` (one session's 1-minute bars), as IB defines a bar.

    Bars are cut at multiples of their size from local midnight in ``zone`` (NASDAQ's first hour
    is 09:30-10:00) and stamped with their period's start, or ``session_open`` (naive UTC) in the
    first period, whether or not its first minute traded; a period without a minute has no bar.
    Open of the first minute, highest high, lowest low, close of the last, summed volume and trade
    count, WAP weighted by volume.
    """
    bar_seconds = tf.bar_seconds
    if bar_seconds is None or bar_seconds % (ONE_MINUTE.bar_seconds or 60):
        raise ValueError(f"{tf.name} bars cannot be built from 1-minute bars")
    periods: dict[int, list[Bar]] = {}
    ordered = sorted(minutes, key=lambda bar: bar.timestamp)
    for bar in ordered:
        periods.setdefault(_period(bar.timestamp, bar_seconds, zone), []).append(bar)
    return [
        _combined(max(session_open, _period_start(parts[0].timestamp, period, bar_seconds, zone)), parts)
        for period, parts in periods.items()
    ]


def _period(timestamp: dt.datetime, bar_seconds: int, zone: str) -> int:
    midnight = _local_midnight(timestamp, zone)
    return math.floor((timestamp.replace(tzinfo=dt.UTC) - midnight).total_seconds() / bar_seconds)


def _period_start(timestamp: dt.datetime, period: int, bar_seconds: int, zone: str) -> dt.datetime:
    start = _local_midnight(timestamp, zone) + dt.timedelta(seconds=period * bar_seconds)
    return start.astimezone(dt.UTC).replace(tzinfo=None)


def _local_midnight(timestamp: dt.datetime, zone: str) -> dt.datetime:
    local = timestamp.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone))
    return dt.datetime.combine(local.date(), dt.time(0), ZoneInfo(zone))


def _combined(start: dt.datetime, parts: Sequence[Bar]) -> Bar:
    volume = sum(part.volume for part in parts)
    waps = [part.wap for part in parts]
    wap: Decimal | None = None
    if volume and all(part_wap is not None for part_wap in waps):
        weighted = sum((Decimal(part.wap or 0) * part.volume for part in parts), Decimal(0))
        wap = (weighted / volume).quantize(_WAP_PLACES, rounding=ROUND_HALF_UP)
    elif len(parts) == 1:
        wap = parts[0].wap
    return Bar(
        timestamp=start,
        open=parts[0].open,
        high=max(part.high for part in parts),
        low=min(part.low for part in parts),
        close=parts[-1].close,
        volume=volume,
        wap=wap,
        bar_count=sum(part.bar_count for part in parts),
    )


def disagreement(derived: Sequence[Bar], asked: Sequence[Bar]) -> str | None:
    """Return how IB's own bars differ from those built from the 1-minute bars, or None if they agree.

    Prices, volume and which bars exist are compared; WAP and trade count are not (IB's definition
    makes them add up, but IB's own bars need not: see docs/intraday.md#derived-bars).
    """
    built = {bar.timestamp: bar for bar in derived}
    served = {bar.timestamp: bar for bar in asked}
    differences = []
    only_ib, only_built = sorted(set(served) - set(built)), sorted(set(built) - set(served))
    if only_ib:
        differences.append(f"{len(only_ib)} IB bars not built (first {only_ib[0]:%H:%M} UTC)")
    if only_built:
        differences.append(f"{len(only_built)} built bars IB lacks (first {only_built[0]:%H:%M} UTC)")
    for field in ("open", "high", "low", "close", "volume"):
        differing = sorted(
            at for at in set(built) & set(served) if getattr(built[at], field) != getattr(served[at], field)
        )
        if differing:
            at = differing[0]
            differences.append(
                f"{field} differs in {len(differing)} bars (first {at:%H:%M} UTC: "
                f"IB {getattr(served[at], field)}, built {getattr(built[at], field)})"
            )
    return "; ".join(differences) or None
