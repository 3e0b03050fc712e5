"""What IB serves for a symbol as of a moment: the market model after the symbol's market properties.

The answers the simulator sends come from here, and tests compare stored data with it rather than
with a collector's own records. Each property and the IB behaviour it models: ``docs/ib-behaviours.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tws_simulator.market import MarketModel, SimBar, SimContract, seeded_uniforms
from tws_simulator.properties import NO_PROPERTIES, BadPropertyValue, MarketProperties

if TYPE_CHECKING:
    from tws_simulator.faults import FaultPlan

#: Split-adjusted prices keep this many decimal places (IB's adjusted history has more than a tick).
ADJUSTED_PLACES = 8
_ADJUSTED_QUANTUM = Decimal(1).scaleb(-ADJUSTED_PLACES)
#: A preliminary bar missing late prints trades this share of the final volume, at least.
PRELIMINARY_VOLUME_SHARE = (0.92, 0.98)
#: A busted print lies this far above the final high (a share of it), at least.
BUSTED_PRINT_ABOVE_HIGH = (0.01, 0.03)
_DAY_SECONDS = 86_400


def adjusted_price(price: Decimal, factor: Decimal) -> Decimal:
    """Return ``price`` divided by a split ``factor``, to :data:`ADJUSTED_PLACES` places, never zero."""
    adjusted = (price / factor).quantize(_ADJUSTED_QUANTUM, rounding=ROUND_HALF_EVEN)
    return max(adjusted, _ADJUSTED_QUANTUM).normalize()


def dividend_adjusted(bar: SimBar, factor: Decimal) -> SimBar:
    """Return ``bar`` as ADJUSTED_LAST serves it: prices times a dividend ``factor``, volume kept."""

    def times(price: Decimal) -> Decimal:
        adjusted = (price * factor).quantize(_ADJUSTED_QUANTUM, rounding=ROUND_HALF_EVEN)
        return max(adjusted, _ADJUSTED_QUANTUM).normalize()

    return dataclasses.replace(
        bar,
        open=times(bar.open),
        high=times(bar.high),
        low=times(bar.low),
        close=times(bar.close),
        wap=times(bar.wap),
    )


def split_adjusted(bar: SimBar, factor: Decimal) -> SimBar:
    """Return ``bar`` on a basis ``factor`` times smaller: prices divided, volume multiplied."""
    return dataclasses.replace(
        bar,
        open=adjusted_price(bar.open, factor),
        high=adjusted_price(bar.high, factor),
        low=adjusted_price(bar.low, factor),
        close=adjusted_price(bar.close, factor),
        wap=adjusted_price(bar.wap, factor),
        volume=int((bar.volume * factor).to_integral_value(rounding=ROUND_HALF_EVEN)),
    )


class SymbolView:
    """What IB serves for one contract as of one moment; made by :meth:`ServedMarket.view`."""

    def __init__(self, served: ServedMarket, contract: SimContract, as_of: dt.datetime) -> None:
        self.model = served.model
        self.contract = contract
        self.as_of = as_of
        self.properties = served.properties(contract.symbol)
        self._seed = served.model.seed
        index = self.model.session_index(contract)
        self._index = index
        self._zone = ZoneInfo(index.time_zone)
        self.as_of_day = as_of.astimezone(self._zone).date()

    # -- sessions --------------------------------------------------------------------------------

    def traded(self, session: dt.date) -> bool:
        """Return whether ``session`` had a trade (an illiquid symbol's may not; its listing session does)."""
        illiquid = self.properties.illiquid_sessions
        if illiquid is None or session == self.contract.listing_date:
            return True
        if session in illiquid.dates:
            return False
        if not illiquid.share:
            return True
        (draw,) = seeded_uniforms(f"{self._seed}|no_trade|{self.contract.symbol}|{session.isoformat()}", 1)
        return draw >= illiquid.share

    def delisted(self) -> bool:
        """Return whether the contract is gone as of this view's moment."""
        delisting = self.properties.delisting
        return delisting is not None and self.as_of_day >= delisting.effective

    def split_factor(self) -> Decimal:
        """Return how many times smaller the served basis is than the model's (1 before any split)."""
        factor = Decimal(1)
        for split in self.properties.splits:
            if self.as_of_day >= split.effective:
                factor *= split.ratio
        return factor

    def dividend_factor(self, session: dt.date) -> Decimal:
        """Return what ADJUSTED_LAST multiplies ``session``'s prices by (1 without a dividend after it).

        One ``1 - amount / close before the ex-date`` per dividend gone ex after ``session`` and by this
        view's day (CRSP's backward adjustment, which IB follows). The close is the last traded one
        before the ex-date, on the share basis of the ex-date, as the amount is.

        :raises BadPropertyValue: a dividend is not below the close before its ex-date.
        """
        factor = Decimal(1)
        for dividend in self.properties.dividends:
            if session < dividend.ex_date <= self.as_of_day:
                close = self.close_before(dividend.ex_date)
                if close is None:
                    continue  # no session before it: nothing to adjust
                if dividend.amount >= close:
                    raise BadPropertyValue(
                        f"dividend of {dividend.amount} on {dividend.ex_date.isoformat()} is not below "
                        f"{self.contract.symbol}'s close of {close} before it"
                    )
                factor *= 1 - dividend.amount / close
        return factor

    def close_before(self, ex_date: dt.date) -> Decimal | None:
        """Return the last traded close before ``ex_date`` on the share basis of ``ex_date`` (None: none)."""
        lo, _ = self._index.between(ex_date, ex_date)
        for position in range(lo - 1, -1, -1):
            day = self._index.dates[position]
            if day < self.contract.listing_date:
                return None
            if self.traded(day):
                basis = Decimal(1)
                for split in self.properties.splits:
                    if split.effective <= ex_date:
                        basis *= split.ratio
                return self.model.daily_bar(self.contract.symbol, day).close / basis
        return None

    def is_final(self, session: dt.date) -> bool:
        """Return whether ``session``'s daily bar is served final (its late corrections are over)."""
        days = self.properties.late_correction_days
        if not days:
            return True
        position = self._index.position(session)
        if position is None:
            return True
        return self.as_of.timestamp() >= self._index.closes[position] + days * _DAY_SECONDS

    # -- bars ------------------------------------------------------------------------------------

    def daily_bar(self, session: dt.date) -> SimBar | None:
        """Return the daily bar served for ``session``, or None when IB has none (no trade, delisted).

        :raises tws_simulator.market.NoSuchSession: ``session`` is no session of the symbol.
        """
        bar = self.model.daily_bar(self.contract.symbol, session)
        properties = self.properties
        if not properties.changes_bars:
            return bar
        if self.delisted() or not self.traded(session):
            return None
        if not self.is_final(session):
            bar = self._preliminary(bar)
        factor = self.split_factor()
        return bar if factor == 1 else split_adjusted(bar, factor)

    def intraday_bars(self, session: dt.date, bar_seconds: int, use_rth: bool) -> tuple[SimBar, ...]:
        """Return the intraday bars served for ``session``: none without a trade, gaps where none traded.

        Late corrections change daily bars only: intraday bars are served final.
        """
        properties = self.properties
        if not properties.changes_bars:
            return self.model.intraday_bars(self.contract.symbol, session, bar_seconds, use_rth)
        if self.delisted() or not self.traded(session):
            return ()
        bars = self.model.intraday_bars(
            self.contract.symbol, session, bar_seconds, use_rth, self.quiet_minutes(session)
        )
        factor = self.split_factor()
        return bars if factor == 1 else tuple(split_adjusted(bar, factor) for bar in bars)

    def adjusted_daily_bar(self, session: dt.date) -> SimBar | None:
        """Return the daily ADJUSTED_LAST bar of ``session``: the TRADES bar adjusted for dividends too.

        :raises tws_simulator.market.NoSuchSession: ``session`` is no session of the symbol.
        """
        bar = self.daily_bar(session)
        if bar is None or not self.properties.dividends:
            return bar
        factor = self.dividend_factor(session)
        return bar if factor == 1 else dividend_adjusted(bar, factor)

    def adjusted_intraday_bars(self, session: dt.date, bar_seconds: int, use_rth: bool) -> tuple[SimBar, ...]:
        """Return the intraday ADJUSTED_LAST bars of ``session``: each takes its session's dividend factor."""
        bars = self.intraday_bars(session, bar_seconds, use_rth)
        if not bars or not self.properties.dividends:
            return bars
        factor = self.dividend_factor(session)
        return bars if factor == 1 else tuple(dividend_adjusted(bar, factor) for bar in bars)

    def quiet_minutes(self, session: dt.date) -> frozenset[float]:
        """Return the starts (epoch seconds) of the regular-hours minutes of ``session`` without a trade.

        Minutes inside a halt, and a seeded ``illiquid_minutes`` share of the others.
        """
        properties = self.properties
        halts = [halt for halt in properties.halts if halt.day == session]
        if not halts and not properties.illiquid_minutes:
            return frozenset()
        position = self._index.position(session)
        if position is None:
            return frozenset()
        opens, closes = self._index.opens[position], self._index.closes[position]
        windows = [
            (
                dt.datetime.combine(session, halt.start, self._zone).timestamp(),
                dt.datetime.combine(session, halt.end, self._zone).timestamp(),
            )
            for halt in halts
        ]
        key = f"{self._seed}|quiet|{self.contract.symbol}|{session.isoformat()}|"
        quiet = set()
        minute = opens
        while minute < closes:
            if any(start <= minute < end for start, end in windows) or (
                properties.illiquid_minutes
                and seeded_uniforms(key + str(int(minute)), 1)[0] < properties.illiquid_minutes
            ):
                quiet.add(minute)
            minute += 60
        return frozenset(quiet)

    def _preliminary(self, bar: SimBar) -> SimBar:
        """Return the bar IB serves before its late corrections: late prints missing, or a print to bust."""
        kind, size = seeded_uniforms(
            f"{self._seed}|correction|{self.contract.symbol}|{bar.date.isoformat()}", 2
        )
        if kind < 0.5:
            low, high = PRELIMINARY_VOLUME_SHARE
            share = low + (high - low) * size
            return dataclasses.replace(
                bar,
                volume=max(1, int(bar.volume * share)),
                bar_count=max(1, int(bar.bar_count * share)),
            )
        low, high = BUSTED_PRINT_ABOVE_HIGH
        above = Decimal(str(round(1 + low + (high - low) * size, 6)))
        busted = (bar.high * above).quantize(self.contract.min_tick, rounding=ROUND_CEILING)
        return dataclasses.replace(bar, high=busted, volume=bar.volume + 100, bar_count=bar.bar_count + 1)


class ServedMarket:
    """The market as IB serves it: the model's contracts and bars after each symbol's properties."""

    def __init__(self, model: MarketModel, faults: FaultPlan) -> None:
        self.model = model
        self._faults = faults

    def properties(self, symbol: str) -> MarketProperties:
        """Return the market properties in force for ``symbol``."""
        return self._faults.properties(symbol) if symbol else NO_PROPERTIES

    def view(self, contract: SimContract, as_of: dt.datetime) -> SymbolView:
        """Return what IB serves for ``contract`` as of ``as_of`` (aware)."""
        return SymbolView(self, contract, as_of)

    # -- contracts -------------------------------------------------------------------------------

    def contract_as_of(self, contract: SimContract, as_of: dt.datetime) -> SimContract | None:
        """Return ``contract`` as IB defines it at ``as_of``: None once delisted, a new conId once changed."""
        view = self.view(contract, as_of)
        if view.delisted():
            return None
        change = view.properties.con_id_change
        if change is not None and view.as_of_day >= change.effective:
            return dataclasses.replace(contract, con_id=change.con_id)
        return contract

    def contract_by_con_id(self, con_id: int, as_of: dt.datetime) -> SimContract | None:
        """Return the contract whose conId is ``con_id`` at ``as_of`` (delisted ones included), or None."""
        for symbol, change in self._faults.symbols_with("con_id_change").items():
            if change.con_id == con_id:
                for renamed in self.model.contracts_named(symbol):
                    if self.view(renamed, as_of).as_of_day >= change.effective:
                        return dataclasses.replace(renamed, con_id=con_id)
        contract = self.model.contract_by_con_id(con_id)
        if contract is None:
            return None
        own_change = self.properties(contract.symbol).con_id_change
        if own_change is not None and self.view(contract, as_of).as_of_day >= own_change.effective:
            return None  # the old conId is unknown from the change on
        return contract

    def symbol_of_con_id(self, con_id: int) -> str:
        """Return the symbol a conId ever belonged to ('' if none), for the request log."""
        contract = self.model.contract_by_con_id(con_id)
        if contract is not None:
            return contract.symbol
        for symbol, change in self._faults.symbols_with("con_id_change").items():
            if change.con_id == con_id:
                return symbol
        return ""

    # -- the model tests compare with ------------------------------------------------------------

    def contract(self, symbol: str, as_of: dt.datetime) -> SimContract | None:
        """Return ``symbol``'s contract as contract details describe it at ``as_of``; None once delisted."""
        return self.contract_as_of(self.model.contract(symbol), as_of)

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date, as_of: dt.datetime) -> list[SimBar]:
        """Return the daily bars IB serves as of ``as_of`` for the sessions ``start`` to ``end`` (inclusive).

        Only sessions closed by ``as_of`` have a bar; sessions without one (no trade) are left out.
        """
        return self._daily_bars(symbol, start, end, as_of, adjusted=False)

    def adjusted_daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, as_of: dt.datetime
    ) -> list[SimBar]:
        """Return the daily ADJUSTED_LAST bars IB serves as of ``as_of`` for sessions ``start`` to ``end``.

        Adjusted for splits and dividends: each bar of :meth:`daily_bars` times its session's dividend factor.
        """
        return self._daily_bars(symbol, start, end, as_of, adjusted=True)

    def _daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, as_of: dt.datetime, adjusted: bool
    ) -> list[SimBar]:
        contract = self.model.contract(symbol)
        view = self.view(contract, as_of)
        index = self.model.session_index(contract)
        bars = []
        for session in self.model.sessions(symbol, start, end):
            position = index.position(session)
            if position is not None and index.closes[position] <= as_of.timestamp():
                bar = view.adjusted_daily_bar(session) if adjusted else view.daily_bar(session)
                if bar is not None:
                    bars.append(bar)
        return bars

    def dividend_factor(self, symbol: str, session: dt.date, as_of: dt.datetime) -> Decimal:
        """Return what ADJUSTED_LAST multiplies ``session``'s prices by as of ``as_of`` (splits aside)."""
        return self.view(self.model.contract(symbol), as_of).dividend_factor(session)

    def daily_bar(self, symbol: str, session: dt.date, as_of: dt.datetime) -> SimBar | None:
        """Return the daily bar IB serves for ``session`` as of ``as_of``, None if it serves none."""
        return self.view(self.model.contract(symbol), as_of).daily_bar(session)

    def intraday_bars(
        self, symbol: str, session: dt.date, bar_seconds: int, use_rth: bool, as_of: dt.datetime
    ) -> tuple[SimBar, ...]:
        """Return every intraday bar IB serves for ``session`` as of ``as_of`` (the whole session)."""
        return self.view(self.model.contract(symbol), as_of).intraday_bars(session, bar_seconds, use_rth)

    def traded(self, symbol: str, session: dt.date) -> bool:
        """Return whether ``symbol`` traded in ``session`` (False: IB never has a bar for it)."""
        return self.view(self.model.contract(symbol), dt.datetime.now(dt.UTC)).traded(session)
