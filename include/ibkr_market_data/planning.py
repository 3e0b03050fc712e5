"""Deciding, for one trading date, which symbols to request and why the others are skipped.

The plan is pure: it takes the symbols, the bars already stored and the clock, and returns one
``CollectionTarget`` per symbol to request (serialisable, one mapped task each) and one
``Skip`` per symbol left alone, with the reason recorded in ``collection_logs``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import cast

from ibkr_market_data import calendars

# The daily bar size and timeframe are defined in bars; the task modules import them from here.
from ibkr_market_data.bars import DAILY_BAR_SIZE
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.payloads import TargetPayload
from ibkr_market_data.repository import SymbolRow

NOT_A_TRADING_DAY = "not a trading day"
ALREADY_COLLECTED = "already collected"
SESSION_NOT_CLOSED = "session not closed yet"


@dataclass(frozen=True)
class CollectionTarget:
    """One symbol's request for one session; travels through XCom as a dict."""

    symbol_id: int
    symbol: str
    exchange: str
    primary_exchange: str
    currency: str
    sec_type: str
    con_id: int
    session: str  # ISO date of the last session requested
    end_date_time: str  # IB end string, e.g. "20250115 23:59:59 Australia/Sydney"
    duration: str
    bar_size: str = DAILY_BAR_SIZE
    first_session: str = ""  # ISO date of the first session requested; empty when it is ``session``

    def contract(self) -> ContractSpec:
        return ContractSpec(
            symbol=self.symbol,
            exchange=self.exchange,
            primary_exchange=self.primary_exchange,
            currency=self.currency,
            sec_type=self.sec_type,
            con_id=self.con_id,
        )

    @property
    def session_date(self) -> dt.date:
        return dt.date.fromisoformat(self.session)

    @property
    def first_session_date(self) -> dt.date:
        return dt.date.fromisoformat(self.first_session or self.session)

    def to_dict(self) -> TargetPayload:
        return cast(TargetPayload, asdict(self))

    @classmethod
    def from_dict(cls, data: TargetPayload) -> CollectionTarget:
        return cls(**data)


@dataclass(frozen=True)
class Skip:
    symbol_id: int
    symbol: str
    reason: str


@dataclass(frozen=True)
class DailyPlan:
    trading_date: dt.date
    targets: list[CollectionTarget]
    skips: list[Skip]


def ib_end_of_day(day: dt.date, exchange: str) -> str:
    """IB's end string for the end of ``day`` in the exchange's time zone."""
    return f"{day:%Y%m%d} 23:59:59 {calendars.time_zone(exchange)}"


def daily_target(row: SymbolRow, first: dt.date, last: dt.date) -> CollectionTarget:
    """The one request for the sessions ``first..last`` of ``row``: a duration in days ending at ``last``."""
    days = (last - first).days + 1
    duration = f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"
    return CollectionTarget(
        symbol_id=row.id,
        symbol=row.symbol,
        exchange=row.exchange,
        primary_exchange=row.primary_exchange,
        currency=row.currency,
        sec_type=row.sec_type,
        con_id=row.con_id or 0,
        session=last.isoformat(),
        end_date_time=ib_end_of_day(last, row.primary_exchange),
        duration=duration,
        first_session="" if first == last else first.isoformat(),
    )


def plan_daily(
    trading_date: dt.date,
    symbols: Sequence[SymbolRow],
    already_collected: Iterable[int],
    now: dt.datetime,
) -> DailyPlan:
    """Targets and skips for ``trading_date``; symbols on an exchange not trading that day send nothing.

    A symbol whose primary exchange has no calendar here is skipped with the reason, alone: the
    others are planned as usual.
    """
    collected = set(already_collected)
    targets: list[CollectionTarget] = []
    skips: list[Skip] = []
    for row in symbols:
        try:
            reason = _skip_reason(row, trading_date, collected, now)
        except calendars.UnknownExchangeError as exc:
            reason = str(exc)
        if reason:
            skips.append(Skip(row.id, row.symbol, reason))
        else:
            targets.append(daily_target(row, trading_date, trading_date))
    return DailyPlan(trading_date=trading_date, targets=targets, skips=skips)


def _skip_reason(row: SymbolRow, trading_date: dt.date, collected: set[int], now: dt.datetime) -> str | None:
    exchange = row.primary_exchange
    if not calendars.is_session(exchange, trading_date):
        return f"{NOT_A_TRADING_DAY} on {exchange}"
    if row.id in collected:
        return ALREADY_COLLECTED
    if calendars.session_close(exchange, trading_date) > now:
        return f"{SESSION_NOT_CLOSED} on {exchange}"
    return None


def session_timestamp(day: dt.date) -> dt.datetime:
    """The ``market_data.timestamp`` of a daily bar: the session date at midnight."""
    return dt.datetime.combine(day, dt.time())
