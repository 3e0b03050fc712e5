"""The simulated market: contracts from the universe it is given, and deterministic bars.

How bars stay deterministic, valid and consistent across bar sizes, and the symbols with extreme
values: docs/simulator.md#market-model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import random
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from tws_simulator.session_index import SessionIndex, session_index
from tws_simulator.universe import Listing

#: Symbols with deliberately extreme values, and why; tests of other modules look them up here.
SPECIAL_SYMBOLS: dict[str, str] = {
    "BRK A": "price above 500,000 USD",
    "GGP": "sub-cent price (AUD, 4 decimal places)",
    "SQQQ": "daily volume above 2**31",
    "GYG": "listed recently (2025-06-16): no bars before",
    "ARM": "listed 2023-09-14: no bars before",
}

#: First trading date of symbols listed after the calendars start.
LISTING_DATES: dict[str, dt.date] = {
    "GYG": dt.date(2025, 6, 16),
    "ARM": dt.date(2023, 9, 14),
}

#: (base price, base daily volume) overriding the seeded profile.
_PROFILE_OVERRIDES: dict[str, tuple[float | None, float | None]] = {
    "BRK A": (720_000.0, 1_500.0),
    "GGP": (0.0062, 40_000_000.0),
    "SQQQ": (None, 3_600_000_000.0),
}

#: IB's ``timeZoneId`` per primary exchange, used in contract details and intraday bar times.
IB_TIME_ZONE_IDS: dict[str, str] = {
    "ASX": "Australia/NSW",
    "NASDAQ": "US/Eastern",
    "NYSE": "US/Eastern",
    "ARCA": "US/Eastern",
    "AMEX": "US/Eastern",
    "BATS": "US/Eastern",
}

#: Exchanges with pre- and post-market trading (``useRTH=0`` returns more intraday bars).
_EXTENDED_HOURS_EXCHANGES = frozenset({"NASDAQ", "NYSE", "ARCA", "AMEX", "BATS"})
_PRE_MARKET_OPEN = dt.time(4, 0)
_POST_MARKET_SECONDS = 4 * 3600
#: Extended-hours volume per minute, as a share of the regular session's volume per minute.
_EXTENDED_VOLUME_SHARE = 0.05
_MINUTE = 60
_HOUR = 3600

_UNIT = 2.0**64


class NoSuchSession(ValueError):
    """The date is not a session of the symbol's exchange, or precedes its listing."""


class UnknownSymbol(KeyError):
    """The symbol is not in the simulator's universe."""


@dataclass(frozen=True)
class SimContract:
    """One instrument the simulator knows, with what contract details report about it."""

    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    con_id: int
    long_name: str
    asset_class: str
    decimals: int
    listing_date: dt.date
    time_zone_id: str

    @property
    def min_tick(self) -> Decimal:
        """Return the price increment: 0.01, or 0.0001 for a symbol priced under one unit."""
        return Decimal(1).scaleb(-self.decimals)


@dataclass(frozen=True)
class SimBar:
    """One bar. ``date`` is a ``datetime.date`` for daily bars, an aware datetime (bar start) else."""

    date: dt.date | dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    wap: Decimal
    bar_count: int

    @property
    def is_valid(self) -> bool:
        """Return whether the bar's open and close lie within its low and high."""
        return self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high


@dataclass(frozen=True)
class _Profile:
    base_price: float
    base_volume: float
    trade_size: float
    slow_amplitude: float
    slow_period: float
    slow_phase: float
    fast_amplitude: float
    fast_period: float
    fast_phase: float


def seeded_uniforms(key: str, count: int) -> tuple[float, ...]:
    """Return ``count`` (<= 8) numbers in [0, 1) drawn from a hash of ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=64).digest()
    return tuple(value / _UNIT for value in struct.unpack_from(f">{count}Q", digest))


def random_stream(key: str) -> random.Random:
    """Return a generator seeded with a hash of ``key``, for paths that need hundreds of draws."""
    return random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=32).digest()))


def _ticks_to_decimal(ticks: int, decimals: int) -> Decimal:
    return Decimal(ticks).scaleb(-decimals)


#: One intraday bar in ticks: start (epoch seconds), open, high, low, close, volume, WAP, trade count.
_Row = tuple[float, int, int, int, int, int, int, int]


def _slot_starts(start: float, end: float, midnight: float, step: int) -> list[float]:
    """Return the starts of the slots of ``[start, end)`` cut at multiples of ``step`` s from ``midnight``."""
    starts = [start]
    boundary = midnight + (math.floor((start - midnight) / step) + 1) * step
    while boundary < end:
        starts.append(boundary)
        boundary += step
    return starts


def _shares(total: int, weights: Sequence[int]) -> list[int]:
    """Share ``total`` in proportion to ``weights`` (positive ints) by largest remainder.

    Integer arithmetic throughout, so the shares add up to ``total`` exactly; ties go to the
    earlier slot.
    """
    weight_sum = sum(weights)
    exact = [total * weight for weight in weights]  # each share, times weight_sum
    shares = [part // weight_sum for part in exact]
    short = total - sum(shares)
    if short:
        remainders = [part % weight_sum for part in exact]
        # sorted() is stable, also in reverse: equal remainders keep slot order.
        for at in sorted(range(len(weights)), key=remainders.__getitem__, reverse=True)[:short]:
            shares[at] += 1
    return shares


def _wap(high: int, low: int, close: int) -> int:
    """Return ``(high + low + 2 * close) / 4`` rounded half up: never outside ``[low, high]``."""
    return (high + low + 2 * close + 2) // 4


def _trade_count(volume: int, trade_size: float) -> int:
    return int(volume / trade_size) + (1 if volume else 0)


def _split_bar(
    open_: int, high: int, low: int, close: int, volume: int, weights: Sequence[int], draws: random.Random
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Split one bar into ``len(weights)`` consecutive bars (opens, highs, lows, closes, volumes).

    The first opens at ``open_``, the last closes at ``close``, each opens where the one before
    closed, the highest high is ``high``, the lowest low is ``low`` and the volumes, shared in
    proportion to ``weights``, add up to ``volume``. In between, prices follow Brownian bridges
    through the high and the low at random points, clamped to ``[low, high]``.
    """
    count = len(weights)
    points = [open_] * (count + 1)
    anchors = {0: open_, count: close}
    if count >= 2:
        at_high = 1 + int(draws.random() * (count - 1))
        at_low = 1 + int(draws.random() * (count - 1))
        anchors[at_high] = high
        anchors.setdefault(at_low, low)
    scale = (high - low) * 1.5 / math.sqrt(count)
    draw = draws.random
    positions = sorted(anchors)
    for left, right in zip(positions, positions[1:], strict=False):
        span = right - left
        walk = list(itertools.accumulate(scale * (draw() - 0.5) for _ in range(span)))
        start_price, end_price = anchors[left], anchors[right]
        # The line from anchor to anchor plus the walk less its own drift: a Brownian bridge.
        slope = (end_price - start_price - walk[-1]) / span
        points[left + 1 : right] = [
            min(high, max(low, round(start_price + slope * step + walk[step - 1]))) for step in range(1, span)
        ]
        points[right] = end_price
    wick = (high - low) * 0.5 / math.sqrt(count)
    opens, closes = points[:-1], points[1:]
    highs, lows = [], []
    for bar_open, bar_close in zip(opens, closes, strict=True):
        top, bottom = (bar_open, bar_close) if bar_open > bar_close else (bar_close, bar_open)
        highs.append(min(high, top + round(draw() * wick)))
        lows.append(max(low, bottom - round(draw() * wick)))
    # Only when no anchor could carry them (a bar of one or two parts): put them where prices are.
    if max(highs) < high:
        highs[max(range(count), key=lambda at: max(opens[at], closes[at]))] = high
    if min(lows) > low:
        lows[min(range(count), key=lambda at: min(opens[at], closes[at]))] = low
    return opens, highs, lows, closes, _shares(volume, weights)


def _drift(start_price: int, count: int, low: int, high: int, step: float, draws: random.Random) -> list[int]:
    """Return ``count + 1`` points of a random walk from ``start_price``, within ``[low, high]``.

    Each move is up to ``step / 2`` ticks.
    """
    points = [start_price]
    price = float(start_price)
    for _ in range(count):
        price = min(high, max(low, price + step * (draws.random() - 0.5)))
        points.append(round(price))
    return points


@dataclass(frozen=True)
class _SessionPath:
    """One session's slots in ticks, column by column, and the bars cut from them.

    Slots are hours or minutes cut at multiples of their length from local ``midnight`` (so the
    first and last can be shorter); extended hours are always minutes. ``regular`` is the index
    range of the regular session's slots, ``end`` the end of the last slot. Every bar cut from
    them, whatever its size, takes its WAP from its own high, low and close and its trade count
    from its own volume and ``trade_size``, so a bar is the same whichever slots it was cut from.
    """

    midnight: float
    end: float
    regular: tuple[int, int]
    trade_size: float
    starts: array[float]
    opens: array[int]
    highs: array[int]
    lows: array[int]
    closes: array[int]
    volumes: array[int]
    #: Where the first bar starts when slots were removed (:meth:`without`); None: at the first slot.
    origin: float | None = None

    @classmethod
    def of(
        cls,
        *,
        midnight: float,
        end: float,
        trade_size: float,
        starts: Sequence[float],
        opens: Sequence[int],
        highs: Sequence[int],
        lows: Sequence[int],
        closes: Sequence[int],
        volumes: Sequence[int],
    ) -> _SessionPath:
        """Build the slots of one part of a session: the regular hours, or the pre- or post-market."""
        return cls(
            midnight=midnight,
            end=end,
            regular=(0, len(starts)),
            trade_size=trade_size,
            starts=array("d", starts),
            opens=array("q", opens),
            highs=array("q", highs),
            lows=array("q", lows),
            closes=array("q", closes),
            volumes=array("q", volumes),
        )

    @classmethod
    def joined(cls, pre: _SessionPath, regular: _SessionPath, post: _SessionPath) -> _SessionPath:
        """Return the regular session's slots with the pre- and post-market minutes around them."""
        return cls(
            midnight=regular.midnight,
            end=post.end,
            regular=(len(pre.starts), len(pre.starts) + len(regular.starts)),
            trade_size=regular.trade_size,
            starts=pre.starts + regular.starts + post.starts,
            opens=pre.opens + regular.opens + post.opens,
            highs=pre.highs + regular.highs + post.highs,
            lows=pre.lows + regular.lows + post.lows,
            closes=pre.closes + regular.closes + post.closes,
            volumes=pre.volumes + regular.volumes + post.volumes,
        )

    def _row(self, start: float, open_: int, high: int, low: int, close: int, volume: int) -> _Row:
        return (
            start,
            open_,
            high,
            low,
            close,
            volume,
            _wap(high, low, close),
            _trade_count(volume, self.trade_size),
        )

    def split_slot(
        self,
        index: int,
        bar_seconds: int,
        weight: Callable[[float, float, random.Random], int],
        draws: random.Random,
    ) -> tuple[list[float], tuple[list[int], list[int], list[int], list[int], list[int]]]:
        """Cut slot ``index`` at multiples of ``bar_seconds`` from midnight into bars that add up to it.

        Return their starts and their columns (``_split_bar``); ``weight(start, end, draws)`` is
        each bar's share of the slot's volume.
        """
        start = self.starts[index]
        end = self.starts[index + 1] if index + 1 < len(self.starts) else self.end
        starts = _slot_starts(start, end, self.midnight, bar_seconds)
        ends = [*starts[1:], end]
        weights = [weight(bar_start, bar_end, draws) for bar_start, bar_end in zip(starts, ends, strict=True)]
        parts = _split_bar(
            self.opens[index],
            self.highs[index],
            self.lows[index],
            self.closes[index],
            self.volumes[index],
            weights,
            draws,
        )
        return starts, parts

    def aggregated(self, bar_seconds: int) -> list[_Row]:
        """Return bars of ``bar_seconds`` (a multiple of the slots' length), aggregating the slots.

        Each bar takes the open of its first slot, the close of its last, the highest high, the
        lowest low and the summed volume.
        """
        starts, midnight = self.starts, self.midnight
        total = len(starts)
        rows: list[_Row] = []
        first = 0
        while first < total:
            slot = math.floor((starts[first] - midnight) / bar_seconds)
            boundary = midnight + (slot + 1) * bar_seconds
            last = first + 1
            while last < total and starts[last] < boundary:
                last += 1
            # A bar is dated by its period, not by its first traded slot (which a gap can move).
            start = starts[first] if self.origin is None else max(self.origin, midnight + slot * bar_seconds)
            rows.append(
                self._row(
                    start,
                    self.opens[first],
                    max(self.highs[first:last]),
                    min(self.lows[first:last]),
                    self.closes[last - 1],
                    sum(self.volumes[first:last]),
                )
            )
            first = last
        return rows

    def without(self, quiet: frozenset[float]) -> _SessionPath:
        """Return this path with the regular-hours slots starting at ``quiet`` instants traded elsewhere.

        A run of quiet slots folds into the next traded slot (the last one of the session when none
        follows): that slot becomes their aggregate, so every bar spanning both, and the session as a
        whole, is unchanged, and the quiet slots' bars are absent. The last slot always trades.
        """
        first, last = self.regular
        kept = [at for at in range(first, last) if self.starts[at] not in quiet] or [last - 1]
        spans = []  # (slot kept, first slot folded into it, end of its span)
        run_start = first
        for at in kept:
            spans.append([at, run_start, at + 1])
            run_start = at + 1
        spans[-1][2] = last
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for at, span_start, span_end in spans:
            columns[0].append(self.starts[at])
            columns[1].append(self.opens[span_start])
            columns[2].append(max(self.highs[span_start:span_end]))
            columns[3].append(min(self.lows[span_start:span_end]))
            columns[4].append(self.closes[span_end - 1])
            columns[5].append(sum(self.volumes[span_start:span_end]))

        def spliced(column: array[Any], new: list[Any]) -> array[Any]:
            return column[:first] + array(column.typecode, new) + column[last:]

        return _SessionPath(
            midnight=self.midnight,
            end=self.end,
            regular=(first, first + len(kept)),
            trade_size=self.trade_size,
            starts=spliced(self.starts, columns[0]),
            opens=spliced(self.opens, columns[1]),
            highs=spliced(self.highs, columns[2]),
            lows=spliced(self.lows, columns[3]),
            closes=spliced(self.closes, columns[4]),
            volumes=spliced(self.volumes, columns[5]),
            origin=self.starts[0] if self.origin is None else self.origin,
        )

    def subdivided(self, bar_seconds: int, key: str) -> list[_Row]:
        """Return bars of ``bar_seconds`` (a divisor of 60), each minute slot split into bars adding up to it.

        Each part of the session (pre-market, regular, post-market) draws from its own stream
        (``key`` plus the part), so regular-hours bars do not depend on ``useRTH``.
        """
        regular_first, regular_last = self.regular
        parts = (
            ("pre", 0, regular_first),
            ("regular", regular_first, regular_last),
            ("post", regular_last, len(self.starts)),
        )
        rows: list[_Row] = []
        for part, first, last in parts:
            if first == last:
                continue
            draws = random_stream(f"{key}|{part}")
            for minute in range(first, last):
                starts, parts_of_minute = self.split_slot(minute, bar_seconds, _noisy_weight, draws)
                rows.extend(map(self._row, starts, *parts_of_minute))
        return rows


class MarketModel:
    """Contracts, sessions and deterministic bars for a universe of symbols.

    ``universe`` is what it serves (:func:`tws_simulator.universe.read_listings` reads it from files).
    """

    def __init__(self, universe: Sequence[Listing], seed: int = 42) -> None:
        if not universe:
            raise ValueError("A market needs a universe: at least one Listing")
        self.seed = seed
        self._symbols = list(universe)
        self._by_con_id: dict[int, SimContract] = {}
        self._by_symbol: dict[str, list[SimContract]] = {}
        for entry in self._symbols:
            contract = self._make_contract(entry)
            self._by_con_id[contract.con_id] = contract
            self._by_symbol.setdefault(contract.symbol, []).append(contract)
        self._profiles: dict[str, _Profile] = {}
        # Per instance, so a model and its bars are freed together.
        self._daily_bar_cached = lru_cache(maxsize=500_000)(self._daily_bar)
        self._intraday_bars_cached = lru_cache(maxsize=20_000)(self._intraday_bars)
        # A path serves every bar size of its session; 2,048 of them take 125 MB at most.
        self._path_cached = lru_cache(maxsize=2_048)(self._path)

    # -- contracts -------------------------------------------------------------------------------

    def _make_contract(self, entry: Listing) -> SimContract:
        profile_price = _PROFILE_OVERRIDES.get(entry.symbol, (None, None))[0]
        primary = entry.primary_exchange.upper()
        base_price = (
            profile_price if profile_price is not None else self._seeded_base_price(entry.symbol, primary)
        )
        index = session_index(primary)
        listing = LISTING_DATES.get(entry.symbol, index.dates[0])
        first = bisect_first_on_or_after(index, listing)
        return SimContract(
            symbol=entry.symbol,
            sec_type=entry.sec_type,
            exchange=entry.exchange,
            primary_exchange=primary,
            currency=entry.currency,
            con_id=entry.con_id,
            long_name=entry.name,
            asset_class=entry.asset_class,
            # A symbol whose trend can take it below one unit is quoted to 4 places throughout.
            decimals=4 if base_price * math.exp(-0.4) < 1 else 2,
            listing_date=first,
            time_zone_id=IB_TIME_ZONE_IDS.get(primary) or index.time_zone,
        )

    def _seeded_base_price(self, symbol: str, primary_exchange: str) -> float:
        """Draw a log-uniform base price: 0.30-120 AUD on the ASX (some penny stocks), 5-600 USD in the US."""
        low, high = (0.3, 120.0) if primary_exchange == "ASX" else (5.0, 600.0)
        (draw,) = seeded_uniforms(f"{self.seed}|price|{symbol}", 1)
        return math.exp(math.log(low) + draw * (math.log(high) - math.log(low)))

    @property
    def contracts(self) -> list[SimContract]:
        """Return every contract, in universe order."""
        return [self._by_con_id[entry.con_id] for entry in self._symbols]

    def contract(self, symbol: str, primary_exchange: str | None = None) -> SimContract:
        """Return the contract of ``symbol`` (on ``primary_exchange`` if the symbol is listed twice)."""
        candidates = [
            contract
            for contract in self._by_symbol.get(symbol, [])
            if primary_exchange is None or contract.primary_exchange == primary_exchange.upper()
        ]
        if not candidates:
            raise UnknownSymbol(symbol)
        return candidates[0]

    def contract_by_con_id(self, con_id: int) -> SimContract | None:
        """Return the contract with ``con_id``, or None."""
        return self._by_con_id.get(con_id)

    def contracts_named(self, symbol: str) -> list[SimContract]:
        """Return every contract whose symbol is ``symbol`` (several if listed on several exchanges)."""
        return list(self._by_symbol.get(symbol, []))

    def session_index(self, contract: SimContract) -> SessionIndex:
        """Return the sessions of ``contract``'s primary exchange."""
        return session_index(contract.primary_exchange)

    # -- sessions --------------------------------------------------------------------------------

    def sessions(self, symbol: str, start: dt.date, end: dt.date) -> list[dt.date]:
        """Return the sessions of ``symbol`` from ``start`` to ``end`` (inclusive), none before listing."""
        contract = self.contract(symbol)
        index = self.session_index(contract)
        lo, hi = index.between(max(start, contract.listing_date), end)
        return list(index.dates[lo:hi])

    def listing_date(self, symbol: str) -> dt.date:
        """Return the first session with a bar: the head timestamp IB reports for ``symbol``."""
        return self.contract(symbol).listing_date

    # -- bars ------------------------------------------------------------------------------------

    def _profile(self, contract: SimContract) -> _Profile:
        profile = self._profiles.get(contract.symbol)
        if profile is None:
            draws = seeded_uniforms(f"{self.seed}|profile|{contract.symbol}", 8)
            price_override, volume_override = _PROFILE_OVERRIDES.get(contract.symbol, (None, None))
            profile = _Profile(
                base_price=price_override
                or self._seeded_base_price(contract.symbol, contract.primary_exchange),
                base_volume=volume_override or math.exp(math.log(2e5) + draws[0] * math.log(250.0)),
                trade_size=50 + 250 * draws[1],
                slow_amplitude=0.12 + 0.13 * draws[2],
                slow_period=500 + 1000 * draws[3],
                slow_phase=2 * math.pi * draws[4],
                fast_amplitude=0.03 + 0.05 * draws[5],
                fast_period=30 + 90 * draws[6],
                fast_phase=2 * math.pi * draws[7],
            )
            self._profiles[contract.symbol] = profile
        return profile

    @staticmethod
    def _trend(profile: _Profile, ordinal: float) -> float:
        """Return the log-price offset from the base price; its magnitude stays below 0.33."""
        return profile.slow_amplitude * math.sin(
            2 * math.pi * ordinal / profile.slow_period + profile.slow_phase
        ) + profile.fast_amplitude * math.sin(
            2 * math.pi * ordinal / profile.fast_period + profile.fast_phase
        )

    def daily_bar(self, symbol: str, session: dt.date) -> SimBar:
        """Return the daily bar of ``symbol`` for ``session``.

        :raises NoSuchSession: if ``session`` is not one of the symbol's sessions.
        """
        return self._daily_bar_cached(symbol, session)

    def intraday_bars(
        self,
        symbol: str,
        session: dt.date,
        bar_seconds: int,
        use_rth: bool,
        quiet_minutes: frozenset[float] = frozenset(),
    ) -> tuple[SimBar, ...]:
        """Return every intraday bar of ``session``, oldest first; ``date`` is the bar's start (aware UTC).

        :param quiet_minutes: starts (epoch seconds) of regular-hours minutes without a trade: their
            bars are absent, their prices and volume traded in the next minute that trades
            (:meth:`_SessionPath.without`), so the session still adds up to its daily bar.
        """
        return self._intraday_bars_cached(symbol, session, bar_seconds, use_rth, quiet_minutes)

    def _daily_bar(self, symbol: str, session: dt.date) -> SimBar:
        contract = self.contract(symbol)
        index = self.session_index(contract)
        if index.position(session) is None or session < contract.listing_date:
            raise NoSuchSession(f"{session.isoformat()} is not a trading session of {symbol}")
        profile = self._profile(contract)
        scale = 10**contract.decimals
        close_noise, open_noise, up, down, volume_noise, trades_noise = seeded_uniforms(
            f"{self.seed}|daily|{symbol}|{session.isoformat()}", 6
        )
        ordinal = session.toordinal()
        close_price = profile.base_price * math.exp(
            self._trend(profile, ordinal) + 0.03 * (close_noise - 0.5)
        )
        open_price = profile.base_price * math.exp(
            self._trend(profile, ordinal - 1) + 0.03 * (open_noise - 0.5)
        )
        open_ticks = max(1, round(open_price * scale))
        close_ticks = max(1, round(close_price * scale))
        high_ticks = max(
            math.ceil(max(open_price, close_price) * math.exp(0.02 * up) * scale), open_ticks, close_ticks
        )
        low_ticks = max(
            1,
            min(
                math.floor(min(open_price, close_price) * math.exp(-0.02 * down) * scale),
                open_ticks,
                close_ticks,
            ),
        )
        volume = int(profile.base_volume * math.exp(0.75 * volume_noise - 0.35))
        wap_ticks = min(high_ticks, max(low_ticks, round((high_ticks + low_ticks + 2 * close_ticks) / 4)))
        trade_size = profile.trade_size * (0.8 + 0.4 * trades_noise)
        return SimBar(
            date=session,
            open=_ticks_to_decimal(open_ticks, contract.decimals),
            high=_ticks_to_decimal(high_ticks, contract.decimals),
            low=_ticks_to_decimal(low_ticks, contract.decimals),
            close=_ticks_to_decimal(close_ticks, contract.decimals),
            volume=volume,
            wap=_ticks_to_decimal(wap_ticks, contract.decimals),
            bar_count=max(1, int(volume / trade_size)),
        )

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> list[SimBar]:
        """Return the daily bars of every session of ``symbol`` from ``start`` to ``end``, both inclusive."""
        return [self.daily_bar(symbol, session) for session in self.sessions(symbol, start, end)]

    def trading_hours(self, contract: SimContract, session: dt.date, use_rth: bool) -> tuple[float, float]:
        """Return (start, end) epoch seconds of the bars of ``session``.

        Regular hours with ``use_rth``, else the extended hours.
        """
        index = self.session_index(contract)
        position = index.position(session)
        if position is None:
            raise NoSuchSession(f"{session.isoformat()} is not a trading session of {contract.symbol}")
        start, end = index.opens[position], index.closes[position]
        if not use_rth and contract.primary_exchange in _EXTENDED_HOURS_EXCHANGES:
            zone = ZoneInfo(index.time_zone)
            start = dt.datetime.combine(session, _PRE_MARKET_OPEN, zone).timestamp()
            end += _POST_MARKET_SECONDS
        return start, end

    def _intraday_bars(
        self,
        symbol: str,
        session: dt.date,
        bar_seconds: int,
        use_rth: bool,
        quiet_minutes: frozenset[float] = frozenset(),
    ) -> tuple[SimBar, ...]:
        contract = self.contract(symbol)
        extended = not use_rth and contract.primary_exchange in _EXTENDED_HOURS_EXCHANGES
        # Hourly bars need the hours only; every shorter bar size nests in the minutes, as do gaps.
        slot_seconds = _HOUR if bar_seconds % _HOUR == 0 and not quiet_minutes else _MINUTE
        path = self._path_cached(symbol, session, slot_seconds, extended)
        if quiet_minutes:
            path = path.without(quiet_minutes)
        if bar_seconds % _MINUTE == 0:
            rows = path.aggregated(bar_seconds)
        elif _MINUTE % bar_seconds == 0:
            rows = path.subdivided(
                bar_seconds, f"{self.seed}|seconds|{symbol}|{session.isoformat()}|{bar_seconds}"
            )
        else:
            raise ValueError(f"Bars of {bar_seconds} s neither divide a minute nor are whole minutes")
        decimals = contract.decimals
        return tuple(
            SimBar(
                date=dt.datetime.fromtimestamp(start, dt.UTC),
                open=_ticks_to_decimal(open_, decimals),
                high=_ticks_to_decimal(high, decimals),
                low=_ticks_to_decimal(low, decimals),
                close=_ticks_to_decimal(close, decimals),
                volume=volume,
                wap=_ticks_to_decimal(wap, decimals),
                bar_count=count,
            )
            for start, open_, high, low, close, volume, wap, count in rows
        )

    def _path(self, symbol: str, session: dt.date, slot_seconds: int, extended: bool) -> _SessionPath:
        """Return the regular session in hours or minutes (``slot_seconds``), which add up to the daily bar.

        With ``extended``, the pre- and post-market minutes are around them.
        """
        if not extended:
            return self._hours(symbol, session) if slot_seconds == _HOUR else self._minutes(symbol, session)
        regular = self._path_cached(symbol, session, slot_seconds, False)
        start, end = self.trading_hours(self.contract(symbol), session, use_rth=False)
        key = f"{self.seed}|{{}}|{symbol}|{session.isoformat()}"
        pre = _drifting_minutes(
            regular, start, regular.starts[0], random_stream(key.format("premarket")), True
        )
        post = _drifting_minutes(regular, regular.end, end, random_stream(key.format("postmarket")), False)
        return _SessionPath.joined(pre, regular, post)

    def _hours(self, symbol: str, session: dt.date) -> _SessionPath:
        """Split the daily bar into the hours of its regular session, more volume near open and close.

        Hours are cut at the hour from local midnight: NASDAQ's first runs 09:30-10:00.
        """
        contract = self.contract(symbol)
        daily = self.daily_bar(symbol, session)
        index = self.session_index(contract)
        position = index.position(session)
        assert position is not None  # daily_bar() checked it
        rth_open, rth_close = index.opens[position], index.closes[position]
        midnight = dt.datetime.combine(session, dt.time(0), ZoneInfo(index.time_zone)).timestamp()
        starts = _slot_starts(rth_open, rth_close, midnight, _HOUR)
        ends = [*starts[1:], rth_close]
        draws = random_stream(f"{self.seed}|hours|{symbol}|{session.isoformat()}")
        weights = [
            _volume_weight(start, end, rth_open, rth_close, 0.8 + 0.4 * draws.random())
            for start, end in zip(starts, ends, strict=True)
        ]
        scale = 10**contract.decimals
        opens, highs, lows, closes, volumes = _split_bar(
            round(daily.open * scale),
            round(daily.high * scale),
            round(daily.low * scale),
            round(daily.close * scale),
            daily.volume,
            weights,
            draws,
        )
        return _SessionPath.of(
            midnight=midnight,
            end=rth_close,
            trade_size=self._profile(contract).trade_size,
            starts=starts,
            opens=opens,
            highs=highs,
            lows=lows,
            closes=closes,
            volumes=volumes,
        )

    def _minutes(self, symbol: str, session: dt.date) -> _SessionPath:
        """Split each hour of the regular session into its minutes (one stream per hour)."""
        hours = self._path_cached(symbol, session, _HOUR, False)
        rth_open, rth_close = hours.starts[0], hours.end
        columns: tuple[list[int], list[int], list[int], list[int], list[int]] = ([], [], [], [], [])
        starts: list[float] = []

        def weight(start: float, end: float, draws: random.Random) -> int:
            return _volume_weight(start, end, rth_open, rth_close, 0.6 + 0.8 * draws.random())

        for hour in range(len(hours.starts)):
            draws = random_stream(f"{self.seed}|minutes|{symbol}|{session.isoformat()}|{hour}")
            minute_starts, parts = hours.split_slot(hour, _MINUTE, weight, draws)
            starts.extend(minute_starts)
            for column, part in zip(columns, parts, strict=True):
                column.extend(part)
        opens, highs, lows, closes, volumes = columns
        return _SessionPath.of(
            midnight=hours.midnight,
            end=hours.end,
            trade_size=hours.trade_size,
            starts=starts,
            opens=opens,
            highs=highs,
            lows=lows,
            closes=closes,
            volumes=volumes,
        )


def _noisy_weight(start: float, end: float, draws: random.Random) -> int:
    """Return a bar's share of its slot's volume: its length, give or take half."""
    return int((end - start) * (0.5 + draws.random()) * 1024) + 1


def _volume_weight(start: float, end: float, rth_open: float, rth_close: float, noise: float) -> int:
    """Return how much of the session's volume ``[start, end)`` trades, relative to its other slots.

    Trading is busiest just after the open and just before the close.
    """
    at = ((start + end) / 2 - rth_open) / (rth_close - rth_open)
    intensity = 0.7 + 1.8 * math.exp(-12 * at) + 1.2 * math.exp(-15 * (1 - at))
    return int((end - start) / _MINUTE * intensity * noise * 2**20) + 1


def _drifting_minutes(
    regular: _SessionPath, start: float, end: float, draws: random.Random, backwards: bool
) -> _SessionPath:
    """Return the extended-hours minutes of ``[start, end)`` beside the ``regular`` ones.

    They drift back from the daily open (``backwards``, pre-market) or on from the daily close,
    within the daily high and low, each trading a small share (``_EXTENDED_VOLUME_SHARE``) of a
    regular minute's volume.
    """
    low, high = min(regular.lows), max(regular.highs)
    step = max(1.0, (high - low) * 0.02)
    regular_seconds = regular.end - regular.starts[0]
    minute_volume = sum(regular.volumes) * _MINUTE / regular_seconds * _EXTENDED_VOLUME_SHARE
    starts = _slot_starts(start, end, regular.midnight, _MINUTE) if start < end else []
    ends = [*starts[1:], end]
    points = _drift(
        regular.opens[0] if backwards else regular.closes[-1], len(starts), low, high, step, draws
    )
    if backwards:
        points.reverse()  # the last pre-market minute closes at the daily open
    opens, closes = points[:-1], points[1:]
    highs, lows, volumes = [], [], []
    for open_, close, slot_start, slot_end in zip(opens, closes, starts, ends, strict=True):
        wick = round(step * draws.random())
        highs.append(min(high, max(open_, close) + wick))
        lows.append(max(low, min(open_, close) - wick))
        volumes.append(int(minute_volume * (slot_end - slot_start) / _MINUTE * (0.5 + draws.random())))
    return _SessionPath.of(
        midnight=regular.midnight,
        end=end,
        trade_size=regular.trade_size,
        starts=starts,
        opens=opens,
        highs=highs,
        lows=lows,
        closes=closes,
        volumes=volumes,
    )


def bisect_first_on_or_after(index: SessionIndex, day: dt.date) -> dt.date:
    """Return the first session of ``index`` on or after ``day`` (the last session if none is)."""
    lo, _ = index.between(day, day)
    return index.dates[min(lo, len(index.dates) - 1)]
