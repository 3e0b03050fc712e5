"""Deciding, for one trading date, which symbols to request and why the others are skipped.

The plan is pure: it takes the symbols, what the database knows of them (stored bars, sessions
known to have no data, IB's first available date) and the clock, and returns one
``CollectionTarget`` per symbol to request (serialisable, one mapped task each) and one ``Skip``
per symbol left alone, with the reason recorded in ``collection_logs``.

Each symbol is judged over its **lookback window**: the last ``lookback_sessions`` closed sessions
of its primary exchange up to the trading date, none before its first available date. Where any
of them is missing (no bar, not known to have no data), the symbol sends one request covering the
whole window: the missing sessions are healed (a date lost to a down scheduler or a failed run is
collected by the next daily run, not left to a manual backfill) and the stored ones come back to be
compared, so late prints and corrections are recorded in ``bar_revisions``. Where none is missing,
nothing is sent: a rerun of a date requests nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
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
NOT_LISTED_YET = "not listed yet"


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
    #: ISO dates of the exchange's sessions the request covers, where the plan knows them (the daily
    #: run's window), so collecting needs no exchange calendar (building one costs ~0.5 CPU-s).
    sessions: Sequence[str] = ()

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

    @property
    def session_dates(self) -> list[dt.date] | None:
        """The sessions the request covers, where known (a one-session request knows its one)."""
        if self.sessions:
            return [dt.date.fromisoformat(day) for day in self.sessions]
        return [self.session_date] if self.first_session_date == self.session_date else None

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


def daily_target(
    row: SymbolRow, first: dt.date, last: dt.date, sessions: Sequence[dt.date] = ()
) -> CollectionTarget:
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
        sessions=tuple(day.isoformat() for day in sessions),
    )


@dataclass(frozen=True)
class StoredState:
    """What the database knows of the symbols around a trading date, per symbol id."""

    bars: Mapping[int, Collection[dt.date]]
    #: Sessions recorded as having no data at IB (settled by the no-data policy): never missing.
    no_data: Mapping[int, Collection[dt.date]] | None = None
    #: IB's head timestamp, where asked: sessions before it are never missing.
    first_available: Mapping[int, dt.date] | None = None


def lookback_sessions(exchange: str, trading_date: dt.date, count: int, now: dt.datetime) -> list[dt.date]:
    """The sessions of ``exchange`` among the last ``count`` trading slots up to ``trading_date``, closed by ``now``.

    The trading date is one slot even where ``exchange`` does not trade it, so a lookback of 1 is
    the date alone, and a holiday's run heals only the sessions before it.
    """
    start = lookback_start(trading_date, count)
    sessions = calendars.sessions_between(exchange, start, trading_date)
    if not calendars.is_session(exchange, trading_date):
        count -= 1
    window = sessions[-count:] if count else []
    return [day for day in window if calendars.session_close(exchange, day) <= now]


def lookback_start(trading_date: dt.date, count: int) -> dt.date:
    """A date on or before the first session of any exchange's lookback window (for reading the database)."""
    # Two calendar days per session, plus a fortnight, hold ``count`` sessions in any calendar.
    return trading_date - dt.timedelta(days=2 * count + 14)


def plan_daily(
    trading_date: dt.date,
    symbols: Sequence[SymbolRow],
    stored: StoredState,
    now: dt.datetime,
    lookback: int = 1,
) -> DailyPlan:
    """Targets and skips for ``trading_date`` over each symbol's lookback window (see the module docstring).

    A symbol whose primary exchange has no calendar here is skipped with the reason, alone: the
    others are planned as usual.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1 session, got {lookback}")
    targets: list[CollectionTarget] = []
    skips: list[Skip] = []
    for row in symbols:
        try:
            window_or_reason = _window(row, trading_date, stored, now, lookback)
        except calendars.UnknownExchangeError as exc:
            window_or_reason = str(exc)
        if isinstance(window_or_reason, str):
            skips.append(Skip(row.id, row.symbol, window_or_reason))
        else:
            targets.append(daily_target(row, window_or_reason[0], window_or_reason[-1], window_or_reason))
    return DailyPlan(trading_date=trading_date, targets=targets, skips=skips)


def _window(
    row: SymbolRow, trading_date: dt.date, stored: StoredState, now: dt.datetime, lookback: int
) -> list[dt.date] | str:
    """The sessions to request for ``row`` (its whole window), or why it sends nothing."""
    exchange = row.primary_exchange
    first_available = (stored.first_available or {}).get(row.id)
    if first_available is not None and first_available > trading_date:
        return f"{NOT_LISTED_YET}: IB has data from {first_available.isoformat()} (head timestamp)"
    window = [
        day
        for day in lookback_sessions(exchange, trading_date, lookback, now)
        if first_available is None or day >= first_available
    ]
    settled = set(stored.bars.get(row.id, ())) | set((stored.no_data or {}).get(row.id, ()))
    if any(day not in settled for day in window):
        return window
    if not calendars.is_session(exchange, trading_date):
        return f"{NOT_A_TRADING_DAY} on {exchange}"
    if calendars.session_close(exchange, trading_date) > now:
        return f"{SESSION_NOT_CLOSED} on {exchange}"
    return ALREADY_COLLECTED


def session_timestamp(day: dt.date) -> dt.datetime:
    """The ``market_data.timestamp`` of a daily bar: the session date at midnight."""
    return dt.datetime.combine(day, dt.time())
