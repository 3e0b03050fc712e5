"""Fill a bench database up to the day before its trading date, as a collector running daily finds it.

Every active symbol's sessions of the lookback before the trading date, in every timeframe the
plan collects for it, are written straight from the simulator's served model (no IB request),
with the no-data and short-session records a daily run leaves. The measured run then collects
the trading date's session alone. See docs/benchmarks.md#steady-state.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from campaign.invariants import Key
from ibkr_market_data.repository import RunContext

#: Who the prefill's rows name (``no_data_sessions``, ``short_sessions``): no Airflow run wrote them.
PREFILL_RUN = RunContext("bench_steady_state", "prefill")


@dataclass(frozen=True)
class Prefill:
    """What the template holds before any measured run: the keys settled, and how."""

    keys: frozenset[Key]
    bars: int
    no_data_sessions: int
    short_sessions: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return the figures for results.json (the keys themselves are counted, not listed)."""
        return {
            "keys": len(self.keys),
            "bars": self.bars,
            "no_data_sessions": self.no_data_sessions,
            "short_sessions": self.short_sessions,
            "seconds": self.seconds,
        }


def prefill(market_db: str, served: Any, trading_date: dt.date, lookback: int, as_of: dt.datetime) -> Prefill:
    """Store every planned key of ``trading_date``'s lookback before it, as IB serves it ``as_of``.

    The symbols and timeframes are the plan's own (``select_wanted_symbols``, ``timeframes_of`` at
    the configured timeframes), the sessions its lookback window (``lookback_sessions``).

    :param served: the simulator's ``ServedMarket``.
    """
    from ibkr_market_data import calendars
    from ibkr_market_data.daily_plan import lookback_sessions
    from ibkr_market_data.tasks.params import select_wanted_symbols, selected_exchanges, timeframes_of

    started = time.perf_counter()
    keys: set[Key] = set()
    bars = no_data = short = 0
    with psycopg.connect(market_db) as conn:
        rows = select_wanted_symbols(conn, [], selected_exchanges({}))
        for tf, symbols in timeframes_of(rows, None).items():
            for row in symbols:
                exchange = row.primary_exchange
                if exchange.upper() not in calendars.CALENDAR_CODES:
                    continue  # the plan skips it with the reason
                window = lookback_sessions(exchange, trading_date, lookback, as_of)
                sessions = [day for day in window if day < trading_date]
                stored = _store_sessions(conn, served, row, tf, sessions, as_of)
                bars += stored.bars
                no_data += stored.no_data
                short += stored.short
                keys.update((row.symbol, tf.name, day) for day in sessions)
                conn.commit()
    return Prefill(frozenset(keys), bars, no_data, short, round(time.perf_counter() - started, 1))


@dataclass(frozen=True)
class _Stored:
    bars: int
    no_data: int
    short: int


def _store_sessions(
    conn: psycopg.Connection, served: Any, row: Any, tf: Any, sessions: list[dt.date], as_of: dt.datetime
) -> _Stored:
    """Store what IB serves of ``sessions`` for one symbol and timeframe, as a daily run would."""
    from ibkr_market_data import calendars, repository
    from ibkr_market_data.daily_plan import scheduled_bars
    from ibkr_market_data_dev.simulated_ib import stored_bar
    from tws_simulator.market import NoSuchSession

    view = served.view(served.model.contract(row.symbol, row.primary_exchange), as_of)
    bars, empty, short = [], [], {}
    for day in sessions:
        try:
            if tf.intraday:
                answer = tuple(view.intraday_bars(day, tf.bar_seconds, True))
            else:
                daily = view.daily_bar(day)
                answer = () if daily is None else (daily,)
        except NoSuchSession:  # before the listing: IB serves nothing
            answer = ()
        if not answer:
            empty.append(day)
            continue
        bars += [stored_bar(bar) for bar in answer]
        if tf.intraday and len(answer) < (scheduled := scheduled_bars(row.primary_exchange, day, tf)):
            short[day] = (len(answer), scheduled, True)
    zone = calendars.time_zone(row.primary_exchange) if tf.intraday else ""
    repository.store_backfilled_bars(conn, row.id, tf.name, bars, PREFILL_RUN, zone)
    if empty:
        reason = "no bar served (bench prefill)"
        repository.record_no_data_sessions(conn, row.id, tf.name, empty, reason, PREFILL_RUN, confirmed=True)
    if short:
        # Settled when two answers held as many bars, as two daily runs settle it.
        for _ in range(2):
            repository.record_short_sessions(conn, row.id, tf.name, short, PREFILL_RUN)
    return _Stored(len(bars), len(empty), len(short))


@dataclass(frozen=True)
class SteadyState:
    """How a measured run's plan met the template: what it asked for beyond what was stored."""

    new_keys: int
    earlier_sessions_planned: int
    symbol_timeframes: int
    examples: list[str]

    @property
    def ok(self) -> bool:
        """Whether the run planned nothing the template held but the trading date's session."""
        return self.new_keys > 0 and not self.earlier_sessions_planned

    def to_dict(self) -> dict[str, Any]:
        """Return the figures for results.json."""
        return {
            "ok": self.ok,
            "new_keys": self.new_keys,
            "earlier_sessions_planned": self.earlier_sessions_planned,
            "symbol_timeframes": self.symbol_timeframes,
            "examples": self.examples,
        }


def steady_state(planned: Iterable[Key], prefilled: Collection[Key], trading_date: dt.date) -> SteadyState:
    """Return how the plan's keys fall: the trading date's, and earlier ones the template missed.

    A plan that sees the template's sessions as stored asks for nothing before the trading date
    beyond them (a daily request spans its whole window, stored sessions included).
    """
    planned = set(planned)
    new = planned - set(prefilled)
    earlier = sorted(key for key in new if key[2] != trading_date)
    return SteadyState(
        new_keys=len(new),
        earlier_sessions_planned=len(earlier),
        symbol_timeframes=len({(symbol, timeframe) for symbol, timeframe, _ in planned}),
        examples=[f"{symbol} {tf} {day}: planned, not in the template" for symbol, tf, day in earlier[:5]],
    )


def intraday_requests_per_symbol_day(
    requests_by_bar_size: dict[str, int], planned: Iterable[Key], prefilled: Collection[Key]
) -> dict[str, Any]:
    """Return the run's intraday requests per symbol-session it collected intraday bars for.

    The symbol-sessions are those of the plan's intraday keys not already stored (any intraday
    timeframe: a session whose 5-minute bars are built from its 1-minute ones counts once).
    """
    from ibkr_market_data.timeframes import TIMEFRAMES, by_bar_size

    intraday = {name for name, tf in TIMEFRAMES.items() if tf.intraday}
    new = set(planned) - set(prefilled)
    symbol_days = len({(symbol, day) for symbol, timeframe, day in new if timeframe in intraday})
    by_size = {size: count for size, count in requests_by_bar_size.items() if by_bar_size(size).intraday}
    requests = sum(by_size.values())
    per_size = {size: round(count / symbol_days, 2) for size, count in by_size.items()} if symbol_days else {}
    return {
        "symbol_days": symbol_days,
        "requests": requests,
        "per_symbol_day": round(requests / symbol_days, 2) if symbol_days else None,
        "by_bar_size": per_size,
    }
