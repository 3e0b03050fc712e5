"""The simulated market: contracts from the universe it is given, and deterministic bars.

Determinism
    Every bar is a pure function of ``(seed, symbol, session)`` (intraday bars also of the bar's
    start and size): no state is carried from one session to the next, so the same bar comes back
    whether a request asked for one session or a year of them, in any order. Prices follow a
    smooth per-symbol trend (two sine waves, seeded) plus per-session noise drawn from a BLAKE2b
    hash, so they look like a market without a random walk's path dependence.

Prices
    ``Decimal`` with a fixed number of places per symbol: 4 for symbols priced under one unit of
    currency (the simulator's ``min_tick`` is then 0.0001), 2 otherwise (``min_tick`` 0.01). The
    wire carries exactly ``format(price, "f")``, so a collector's stored value can be compared with
    :meth:`MarketModel.daily_bar` exactly. OHLC is always valid: ``low <= open, close <= high`` and
    ``low > 0``. ``wap`` lies within ``[low, high]`` with the same places; ``volume`` and
    ``bar_count`` are ints.

Values that break naive schemas (see :data:`SPECIAL_SYMBOLS`)
    ``BRK A`` (NYSE) trades above 500,000 USD; ``GGP`` (ASX) is a sub-cent AUD stock (4 places,
    always below 0.01); ``SQQQ`` (NASDAQ) trades more than 2**31 shares every session. ASX symbols
    are priced in AUD, US symbols in USD (the universe's currency column).

Listing dates (see :data:`LISTING_DATES`)
    ``GYG`` (ASX) lists on 2025-06-16 and ``ARM`` (NASDAQ) on 2023-09-14; there are no bars
    before those sessions. Every other symbol has bars from the first session of its exchange's
    calendar (:data:`tws_simulator.session_index.CALENDAR_START`).

Sessions
    Each symbol trades on the sessions of its primary exchange's real calendar, so ASX holidays
    (Australia Day 2025-01-27) and US holidays (MLK day 2025-01-20) differ.

Intraday bars
    Bars of one session start at the session open (or, outside regular hours for US exchanges,
    04:00 New York time, and run to four hours after the close) and are aligned to multiples of
    the bar size from local midnight; the first and last bar of a session can be shorter. Their
    prices follow a path from the daily open to the daily close and stay within the daily high
    and low; their volumes are not constructed to add up to the daily volume.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
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


def _uniforms(key: str, count: int) -> tuple[float, ...]:
    """``count`` (<= 8) numbers in [0, 1) drawn from a hash of ``key``: the model's only randomness."""
    digest = hashlib.blake2b(key.encode(), digest_size=64).digest()
    return tuple(value / _UNIT for value in struct.unpack_from(f">{count}Q", digest))


def _ticks_to_decimal(ticks: int, decimals: int) -> Decimal:
    return Decimal(ticks).scaleb(-decimals)


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
        """Log-uniform: 0.30-120 AUD on the ASX (some penny stocks), 5-600 USD in the US."""
        low, high = (0.3, 120.0) if primary_exchange == "ASX" else (5.0, 600.0)
        (draw,) = _uniforms(f"{self.seed}|price|{symbol}", 1)
        return math.exp(math.log(low) + draw * (math.log(high) - math.log(low)))

    @property
    def contracts(self) -> list[SimContract]:
        """Every contract, in universe order."""
        return [self._by_con_id[entry.con_id] for entry in self._symbols]

    def contract(self, symbol: str, primary_exchange: str | None = None) -> SimContract:
        """The contract of ``symbol`` (on ``primary_exchange`` if the symbol is listed twice)."""
        candidates = [
            contract
            for contract in self._by_symbol.get(symbol, [])
            if primary_exchange is None or contract.primary_exchange == primary_exchange.upper()
        ]
        if not candidates:
            raise UnknownSymbol(symbol)
        return candidates[0]

    def contract_by_con_id(self, con_id: int) -> SimContract | None:
        return self._by_con_id.get(con_id)

    def contracts_named(self, symbol: str) -> list[SimContract]:
        """Every contract whose symbol is ``symbol`` (several if listed on several exchanges)."""
        return list(self._by_symbol.get(symbol, []))

    def session_index(self, contract: SimContract) -> SessionIndex:
        return session_index(contract.primary_exchange)

    # -- sessions --------------------------------------------------------------------------------

    def sessions(self, symbol: str, start: dt.date, end: dt.date) -> list[dt.date]:
        """Sessions of ``symbol`` from ``start`` to ``end`` (inclusive), none before its listing."""
        contract = self.contract(symbol)
        index = self.session_index(contract)
        lo, hi = index.between(max(start, contract.listing_date), end)
        return list(index.dates[lo:hi])

    def listing_date(self, symbol: str) -> dt.date:
        """The first session with a bar: the head timestamp IB reports for ``symbol``."""
        return self.contract(symbol).listing_date

    # -- bars ------------------------------------------------------------------------------------

    def _profile(self, contract: SimContract) -> _Profile:
        profile = self._profiles.get(contract.symbol)
        if profile is None:
            draws = _uniforms(f"{self.seed}|profile|{contract.symbol}", 8)
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
        """Log-price offset from the base price; its magnitude stays below 0.33."""
        return profile.slow_amplitude * math.sin(
            2 * math.pi * ordinal / profile.slow_period + profile.slow_phase
        ) + profile.fast_amplitude * math.sin(
            2 * math.pi * ordinal / profile.fast_period + profile.fast_phase
        )

    def daily_bar(self, symbol: str, session: dt.date) -> SimBar:
        """The daily bar of ``symbol`` for ``session``; raises :class:`NoSuchSession` on a non-session."""
        return self._daily_bar_cached(symbol, session)

    def intraday_bars(
        self, symbol: str, session: dt.date, bar_seconds: int, use_rth: bool
    ) -> tuple[SimBar, ...]:
        """Every intraday bar of ``session``, oldest first; ``date`` is the bar's start (aware UTC)."""
        return self._intraday_bars_cached(symbol, session, bar_seconds, use_rth)

    def _daily_bar(self, symbol: str, session: dt.date) -> SimBar:
        contract = self.contract(symbol)
        index = self.session_index(contract)
        if index.position(session) is None or session < contract.listing_date:
            raise NoSuchSession(f"{session.isoformat()} is not a trading session of {symbol}")
        profile = self._profile(contract)
        scale = 10**contract.decimals
        close_noise, open_noise, up, down, volume_noise, trades_noise = _uniforms(
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
        """Daily bars of every session of ``symbol`` from ``start`` to ``end``, both inclusive."""
        return [self.daily_bar(symbol, session) for session in self.sessions(symbol, start, end)]

    def trading_hours(self, contract: SimContract, session: dt.date, use_rth: bool) -> tuple[float, float]:
        """(start, end) epoch seconds of the bars of ``session``: regular hours, or extended if not RTH."""
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
        self, symbol: str, session: dt.date, bar_seconds: int, use_rth: bool
    ) -> tuple[SimBar, ...]:
        contract = self.contract(symbol)
        daily = self.daily_bar(symbol, session)
        index = self.session_index(contract)
        position = index.position(session)
        assert position is not None  # daily_bar() checked it
        rth_open, rth_close = index.opens[position], index.closes[position]
        start, end = self.trading_hours(contract, session, use_rth)
        zone = ZoneInfo(index.time_zone)
        midnight = dt.datetime.combine(session, dt.time(0), zone).timestamp()
        profile = self._profile(contract)
        scale = 10**contract.decimals
        open_ticks, close_ticks = round(daily.open * scale), round(daily.close * scale)
        high_ticks, low_ticks = round(daily.high * scale), round(daily.low * scale)
        session_seconds = rth_close - rth_open
        wiggle = (high_ticks - low_ticks) / 2
        phase = _uniforms(f"{self.seed}|path|{symbol}|{session.isoformat()}", 1)[0] * 2 * math.pi

        def price_ticks(at: float) -> int:
            share = min(1.0, max(0.0, (at - rth_open) / session_seconds))
            path = open_ticks + (close_ticks - open_ticks) * share
            path += wiggle * math.sin(3 * math.pi * share + phase) * 4 * share * (1 - share)
            return min(high_ticks, max(low_ticks, round(path)))

        bars: list[SimBar] = []
        bar_start = start
        while bar_start < end:
            boundary = midnight + (math.floor((bar_start - midnight) / bar_seconds) + 1) * bar_seconds
            bar_end = min(boundary, end)
            up, down, volume_noise = _uniforms(f"{self.seed}|bar|{symbol}|{bar_seconds}|{bar_start:.0f}", 3)
            first, last = price_ticks(bar_start), price_ticks(bar_end)
            spread = max(1, round(wiggle * 0.1))
            high = min(high_ticks, max(first, last) + round(spread * up))
            low = max(low_ticks, min(first, last) - round(spread * down))
            regular = rth_open <= bar_start < rth_close
            share = (bar_end - bar_start) / session_seconds * (1.0 if regular else 0.05)
            volume = int(daily.volume * share * (0.5 + volume_noise))
            bars.append(
                SimBar(
                    date=dt.datetime.fromtimestamp(bar_start, dt.UTC),
                    open=_ticks_to_decimal(first, contract.decimals),
                    high=_ticks_to_decimal(high, contract.decimals),
                    low=_ticks_to_decimal(low, contract.decimals),
                    close=_ticks_to_decimal(last, contract.decimals),
                    volume=volume,
                    wap=_ticks_to_decimal(
                        min(high, max(low, round((high + low + 2 * last) / 4))), contract.decimals
                    ),
                    bar_count=int(volume / profile.trade_size) + (1 if volume else 0),
                )
            )
            bar_start = bar_end
        return tuple(bars)


def bisect_first_on_or_after(index: SessionIndex, day: dt.date) -> dt.date:
    """The first session of ``index`` on or after ``day`` (the last session if none is)."""
    lo, _ = index.between(day, day)
    return index.dates[min(lo, len(index.dates) - 1)]
