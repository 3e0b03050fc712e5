"""Plan the daily run: for one trading date, which symbols to request and why the others are skipped.

The plan is pure (symbols, what the database stores and the clock in; one ``CollectionTarget`` per
request and one ``Skip`` per symbol left alone out) and heals each symbol's lookback window.
See docs/daily-dag.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, cast

from ibkr_market_data import calendars

# The daily bar size and timeframe are defined in bars; the task modules import them from here.
from ibkr_market_data.bars import DAILY_BAR_SIZE
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.errors import UnknownExchangeError
from ibkr_market_data.payloads import TargetPayload
from ibkr_market_data.repository import SymbolRow
from ibkr_market_data.timeframes import (
    DAILY,
    Timeframe,
    by_bar_size,
    expected_bars,
    request_duration,
    session_date,
)

if TYPE_CHECKING:
    from ibkr_market_data.bars import Bar
    from ibkr_market_data.universe import Membership

NOT_A_TRADING_DAY = "not a trading day"
ALREADY_COLLECTED = "already collected"
SESSION_NOT_CLOSED = "session not closed yet"
NOT_LISTED_YET = "not listed yet"
OUTSIDE_MEMBERSHIP = "outside its universe membership"


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
    #: ISO dates of the sessions the request covers, where the plan knows them: collecting then
    #: needs no exchange calendar, which costs ~0.5 CPU-s to build.
    sessions: Sequence[str] = ()
    #: Intraday only: the exchange's time zone (a bar's session is its start's date there), per
    #: session of ``sessions`` the bars its schedule holds (early closes hold fewer), and when the
    #: newest session closes (ISO, UTC): a short tail is held against it without a calendar.
    time_zone: str = ""
    expected_bars: Sequence[int] = ()
    session_close: str = ""
    #: 1-minute only: the timeframes (``5min``, ``1hour``) built from the stored minutes of each
    #: session once they are written, instead of asking IB (``derived``).
    derive: Sequence[str] = ()
    #: With ``derive``: per session of ``sessions``, its open (naive UTC, ISO), which stamps the
    #: first derived bar whether or not its first minute traded.
    session_opens: Sequence[str] = ()
    #: 5min/1hour only: IB's answer is the cross-check of the bars built from this session's minutes.
    cross_check: bool = False

    def contract(self) -> ContractSpec:
        """Return the contract the request is for."""
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
        """The last session requested."""
        return dt.date.fromisoformat(self.session)

    @property
    def first_session_date(self) -> dt.date:
        """The first session requested."""
        return dt.date.fromisoformat(self.first_session or self.session)

    @property
    def timeframe(self) -> Timeframe:
        """The timeframe of ``bar_size``."""
        return by_bar_size(self.bar_size)

    @property
    def planned_bars(self) -> int:
        """The bars the request should return: its sessions' scheduled bars, or one a daily session."""
        if self.expected_bars:
            return sum(self.expected_bars)
        return max(1, len(self.sessions))

    @property
    def label(self) -> str:
        """How logs and map indexes name it: the symbol, and its timeframe when intraday (``AAPL 5min``)."""
        if not self.timeframe.intraday:
            return self.symbol
        return f"{self.symbol} {self.timeframe.name}"

    @property
    def newest_close(self) -> dt.datetime | None:
        """When the newest session closes, naive UTC as bars are timed; None where the plan did not say."""
        if not self.session_close:
            return None
        return dt.datetime.fromisoformat(self.session_close).astimezone(dt.UTC).replace(tzinfo=None)

    def session_of(self, bar: Bar) -> dt.date:
        """Return the session of ``bar``: its date, in the exchange's zone for an intraday bar."""
        if not self.time_zone:
            return bar.session_date
        return session_date(bar.timestamp, self.time_zone)

    def complete_sessions(self, stored_bars: Mapping[dt.date, int]) -> set[dt.date]:
        """Return the sessions whose stored bars (a count per session) are all there.

        A daily session needs one bar, an intraday session every bar its schedule holds.
        """
        expected = dict(zip(self.sessions, self.expected_bars, strict=False))
        return {day for day, count in stored_bars.items() if count >= expected.get(day.isoformat(), 1)}

    @property
    def session_dates(self) -> list[dt.date] | None:
        """The sessions the request covers, where known (a one-session request knows its one)."""
        if self.sessions:
            return [dt.date.fromisoformat(day) for day in self.sessions]
        return [self.session_date] if self.first_session_date == self.session_date else None

    def to_dict(self) -> TargetPayload:
        """Return the target as the dict that travels through XCom."""
        return cast(TargetPayload, asdict(self))

    @classmethod
    def from_dict(cls, data: TargetPayload) -> CollectionTarget:
        """Return the target ``to_dict`` made ``data`` from."""
        return cls(**data)


@dataclass(frozen=True)
class Skip:
    """A symbol the plan sends no request for, and why."""

    symbol_id: int
    symbol: str
    reason: str


@dataclass(frozen=True)
class DailyPlan:
    """The requests and skips of one trading date."""

    trading_date: dt.date
    targets: list[CollectionTarget]
    skips: list[Skip]


def ib_end_of_day(day: dt.date, exchange: str) -> str:
    """Return IB's end string for the end of ``day`` in the exchange's time zone."""
    return f"{day:%Y%m%d} 23:59:59 {calendars.time_zone(exchange)}"


def daily_target(
    row: SymbolRow, first: dt.date, last: dt.date, sessions: Sequence[dt.date] = ()
) -> CollectionTarget:
    """Return the one request for the sessions ``first..last`` of ``row``, a duration ending at ``last``."""
    days = (last - first).days + 1
    duration = f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"
    return _target(row, first, last, sessions, duration)


def intraday_target(row: SymbolRow, tf: Timeframe, sessions: Sequence[dt.date]) -> CollectionTarget:
    """Return the one request for ``tf`` bars of ``sessions`` (consecutive, within one request's span)."""
    first, last = sessions[0], sessions[-1]
    exchange = row.primary_exchange
    return _target(
        row,
        first,
        last,
        sessions,
        request_duration((last - first).days + 1, tf),
        tf,
        time_zone=calendars.time_zone(exchange),
        expected=tuple(scheduled_bars(exchange, day, tf) for day in sessions),
        close=calendars.session_close(exchange, last).isoformat(),
    )


def _target(
    row: SymbolRow,
    first: dt.date,
    last: dt.date,
    sessions: Sequence[dt.date],
    duration: str,
    tf: Timeframe = DAILY,
    time_zone: str = "",
    expected: Sequence[int] = (),
    close: str = "",
) -> CollectionTarget:
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
        bar_size=tf.bar_size,
        time_zone=time_zone,
        expected_bars=tuple(expected),
        session_close=close,
    )


@cache
def scheduled_bars(exchange: str, day: dt.date, tf: Timeframe) -> int:
    """Return how many ``tf`` bars session ``day`` of ``exchange`` holds by its schedule."""
    return expected_bars(
        tf,
        calendars.session_open(exchange, day),
        calendars.session_close(exchange, day),
        calendars.time_zone(exchange),
    )


def complete_sessions(
    rows: Sequence[SymbolRow], tf: Timeframe, bar_counts: Mapping[int, Mapping[dt.date, int]]
) -> dict[int, set[dt.date]]:
    """Return, per symbol id, the sessions whose stored ``tf`` bars are all there by the schedule.

    A symbol whose exchange has no calendar here has none complete (the plan skips it with the reason).
    """
    exchanges = {row.id: row.primary_exchange for row in rows}
    complete: dict[int, set[dt.date]] = {}
    for symbol_id, counts in bar_counts.items():
        exchange = exchanges.get(symbol_id)
        if exchange is None or exchange.upper() not in calendars.CALENDAR_CODES:
            continue
        complete[symbol_id] = {
            day
            for day, count in counts.items()
            if calendars.is_session(exchange, day) and count >= scheduled_bars(exchange, day, tf)
        }
    return complete


def split_windows(sessions: Sequence[dt.date], max_days: int) -> list[list[dt.date]]:
    """Cut sorted ``sessions`` into the fewest windows of at most ``max_days`` calendar days.

    Greedy is optimal for covering points on a line with windows of a fixed length: each window
    starts at the first session not yet covered and takes every later one that fits.
    """
    windows: list[list[dt.date]] = []
    for day in sessions:
        if windows and (day - windows[-1][0]).days < max_days:
            windows[-1].append(day)
        else:
            windows.append([day])
    return windows


@dataclass(frozen=True)
class StoredState:
    """What the database knows of the symbols around a trading date, per symbol id."""

    bars: Mapping[int, Collection[dt.date]]
    #: Sessions recorded as having no data at IB (settled by the no-data policy): never missing.
    no_data: Mapping[int, Collection[dt.date]] | None = None
    #: IB's head timestamp, where asked: sessions before it are never missing.
    first_available: Mapping[int, dt.date] | None = None
    #: Universe-file membership periods, where a symbol has any: outside them it is not collected.
    memberships: Mapping[int, Sequence[Membership]] | None = None


def lookback_sessions(exchange: str, trading_date: dt.date, count: int, now: dt.datetime) -> list[dt.date]:
    """Return the sessions of ``exchange`` in the last ``count`` slots to ``trading_date``, closed by ``now``.

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
    """Return a date on or before the first session of any exchange's lookback window."""
    # Two calendar days per session, plus a fortnight, hold ``count`` sessions in any calendar.
    return trading_date - dt.timedelta(days=2 * count + 14)


def plan_daily(
    trading_date: dt.date,
    symbols: Sequence[SymbolRow],
    stored: StoredState,
    now: dt.datetime,
    lookback: int = 1,
    tf: Timeframe = DAILY,
) -> DailyPlan:
    """Plan the targets and skips of ``tf`` for ``trading_date`` over each symbol's lookback window.

    A symbol whose primary exchange has no calendar here is skipped with the reason, alone: the
    others are planned as usual. Daily bars: one request for the whole window. Intraday bars
    (``stored.bars``: the sessions complete by the schedule): one request per stretch of
    incomplete sessions that one request can span, since a request carries at most a day of
    1-minute bars.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1 session, got {lookback}")
    targets: list[CollectionTarget] = []
    skips: list[Skip] = []
    for row in symbols:
        try:
            window_or_reason = _window(row, trading_date, stored, now, lookback)
        except UnknownExchangeError as exc:
            window_or_reason = str(exc)
        if isinstance(window_or_reason, str):
            skips.append(Skip(row.id, row.symbol, window_or_reason))
        elif tf.intraday:
            settled = set(stored.bars.get(row.id, ())) | set((stored.no_data or {}).get(row.id, ()))
            unsettled = [day for day in window_or_reason if day not in settled]
            for chunk in split_windows(unsettled, tf.max_request_days):
                covered = [day for day in window_or_reason if chunk[0] <= day <= chunk[-1]]
                targets.append(intraday_target(row, tf, covered))
        else:
            targets.append(daily_target(row, window_or_reason[0], window_or_reason[-1], window_or_reason))
    return DailyPlan(trading_date=trading_date, targets=targets, skips=skips)


def _window(
    row: SymbolRow, trading_date: dt.date, stored: StoredState, now: dt.datetime, lookback: int
) -> list[dt.date] | str:
    """Return the sessions to request for ``row`` (its whole window), or why it sends nothing."""
    exchange = row.primary_exchange
    memberships = (stored.memberships or {}).get(row.id, ())
    if memberships and not any(membership.covers(trading_date) for membership in memberships):
        periods = ", ".join(f"{m.valid_from or ''}..{m.valid_to or ''}" for m in memberships)
        return f"{OUTSIDE_MEMBERSHIP} ({periods})"
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
    """Return the ``market_data.timestamp`` of a daily bar: the session date at midnight."""
    return dt.datetime.combine(day, dt.time())
