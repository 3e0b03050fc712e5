"""Decide which market-data assets a run completed, and attach their events to its summary task.

An asset (exchange, timeframe) gets an event only when every symbol expected there is collected
for the run's sessions. See docs/assets.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ibkr_market_data import calendars, repository, timeframes
from ibkr_market_data.assets import MARKET_DATA_ALIAS, asset_name, market_data_asset
from ibkr_market_data.errors import UnknownExchangeError
from ibkr_market_data.run_summary import short_list
from ibkr_market_data.tasks.database import market_connection

if TYPE_CHECKING:
    import psycopg
    from airflow.sdk.types import OutletEventAccessorsProtocol

    from ibkr_market_data.payloads import BackfillRequestPayload
    from ibkr_market_data.repository import RunContext, SymbolRow

log = logging.getLogger(__name__)

#: The sessions of an exchange a run set out to fill.
SessionsOf = Callable[[str], Sequence[dt.date]]


@dataclass(frozen=True)
class AssetCompletion:
    """Where one (listing exchange, timeframe) stands after a run, over the run's sessions there."""

    exchange: str
    timeframe: str
    sessions: tuple[dt.date, ...]
    #: Active symbols of the exchange that get this timeframe (``IBKR_INTRADAY_*`` for intraday ones).
    symbols: int
    #: Of them, those with every session's bars stored.
    stored: int
    #: Those with a session IB has no bar for (before the symbol's first date, or answered empty).
    no_data: int
    #: Those with a session not collected (failed, partial or never asked), by name.
    missing: tuple[str, ...]
    #: Bars this run collected on the exchange in this timeframe.
    bars_collected: int

    @property
    def name(self) -> str:
        """The asset's name, ``market_data/<exchange>/<timeframe>``."""
        return asset_name(self.exchange, self.timeframe)

    @property
    def complete(self) -> bool:
        """Whether every expected symbol is collected for every session (and any symbol is expected)."""
        return self.symbols > 0 and not self.missing

    def extra(self, run: RunContext) -> dict[str, Any]:
        """Return the asset event's extra: what the event says to a consumer, JSON only."""
        return {
            "exchange": self.exchange,
            "timeframe": self.timeframe,
            "sessions": [day.isoformat() for day in self.sessions],
            "symbols": self.symbols,
            "stored": self.stored,
            "no_data": self.no_data,
            "bars_collected": self.bars_collected,
            "dag_id": run.dag_id,
            "run_id": run.run_id,
        }


def expected_symbols(active: Sequence[SymbolRow], exchange: str, timeframe: str) -> list[str]:
    """Return the names of the ``active`` symbols listed on ``exchange`` that are collected in ``timeframe``.

    Daily bars: every one. Intraday: those whose priority the timeframe policy gives it to.
    """
    tf = timeframes.timeframe(timeframe)
    policy = timeframes.policy_from_env()
    return sorted(
        row.symbol
        for row in active
        if row.primary_exchange == exchange and tf in policy.for_priority(row.priority)
    )


def completion(
    conn: psycopg.Connection,
    exchange: str,
    timeframe: str,
    sessions: Sequence[dt.date],
    names: Sequence[str],
    bars_collected: int = 0,
) -> AssetCompletion:
    """Return the completion of (``exchange``, ``timeframe``) over ``sessions`` for symbols ``names``.

    Read through the read API's coverage (``reader.read_coverage``), so an event means what a
    consumer reading the same range would find.

    :param conn: an open connection to the market-data database.
    :param exchange: the listing exchange.
    :param timeframe: the timeframe's name.
    :param sessions: the sessions of the exchange to look at, oldest first.
    :param names: the symbols expected there.
    :param bars_collected: what the run collected there, carried into the event.
    """
    from ibkr_market_data.reader import COLLECTED_STATUSES, CoverageStatus, read_coverage

    wanted = set(sessions)
    statuses: dict[str, set[str]] = {}
    if names and sessions:
        frame = read_coverage(list(names), timeframe, min(sessions), max(sessions), conn=conn)
        for (symbol, session), exchange_of, status in zip(
            frame.index, frame["exchange"], frame["status"], strict=True
        ):
            if exchange_of == exchange and session in wanted:
                statuses.setdefault(str(symbol), set()).add(str(status))
    collected = {status.value for status in COLLECTED_STATUSES}
    # A symbol the coverage left out (a name listed elsewhere too) counts as not collected.
    missing = tuple(name for name in names if not statuses.get(name) or statuses[name] - collected)
    no_data = [
        name for name in names if name not in missing and CoverageStatus.NO_DATA.value in statuses[name]
    ]
    return AssetCompletion(
        exchange=exchange,
        timeframe=timeframe,
        sessions=tuple(sorted(wanted)),
        symbols=len(names),
        stored=len(names) - len(missing) - len(no_data),
        no_data=len(no_data),
        missing=missing,
        bars_collected=bars_collected,
    )


def run_completions(
    conn: psycopg.Connection, run: RunContext, sessions_of: SessionsOf
) -> list[AssetCompletion]:
    """Return the completion of each (listing exchange, timeframe) where the run collected something.

    :param conn: an open connection to the market-data database.
    :param run: the run.
    :param sessions_of: the sessions of an exchange the run set out to fill.
    """
    collected = repository.run_collected_listings(conn, run.dag_id, run.run_id)
    # The 5min/1hour bars a 1-minute attempt built are the run's work there too (docs/intraday.md).
    for item in repository.planned_items(conn, run):
        if (item.get("primary_exchange"), "1min") in collected:
            for timeframe in item.get("derive") or ():
                collected.setdefault((item["primary_exchange"], timeframe), 0)
    if not collected:
        return []
    active = repository.select_symbols(conn)
    completions = []
    for (exchange, timeframe), bars in sorted(collected.items()):
        try:
            sessions = sessions_of(exchange)
        except UnknownExchangeError as exc:
            log.info("No asset event for %s %s: %s", exchange, timeframe, exc)
            continue
        names = expected_symbols(active, exchange, timeframe)
        completions.append(completion(conn, exchange, timeframe, sessions, names, bars))
    return completions


def emit_events(
    outlet_events: OutletEventAccessorsProtocol, completions: Sequence[AssetCompletion], run: RunContext
) -> list[str]:
    """Attach an event to the ``market_data`` alias for each complete asset; log why the others get none.

    Airflow registers the events when the task succeeds.

    :return: the names of the assets given an event.
    """
    emitted = []
    for item in completions:
        if not item.sessions:
            log.info("No asset event for %s: no session of %s in the run's range", item.name, item.exchange)
            continue
        span = f"{item.sessions[0]}..{item.sessions[-1]}" if len(item.sessions) > 1 else str(item.sessions[0])
        if not item.complete:
            log.info(
                "No asset event for %s (%s): %s",
                item.name,
                span,
                f"{len(item.missing)} of {item.symbols} symbols not collected: {short_list(item.missing)}"
                if item.missing
                else "no symbol is collected in this timeframe there",
            )
            continue
        outlet_events[MARKET_DATA_ALIAS].add(
            market_data_asset(item.exchange, item.timeframe), item.extra(run)
        )
        log.info(
            "Asset event for %s (%s): %d symbols, %d stored, %d without data at IB",
            item.name,
            span,
            item.symbols,
            item.stored,
            item.no_data,
        )
        emitted.append(item.name)
    return emitted


def daily_sessions(trading_date: str) -> SessionsOf:
    """Return the sessions a daily run of ``trading_date`` fills per exchange: that date, if it trades."""
    day = dt.date.fromisoformat(trading_date)
    return lambda exchange: calendars.sessions_between(exchange, day, day)


def backfill_sessions(start: str, end: str) -> SessionsOf:
    """Return the sessions a backfill of ``start``..``end`` fills per exchange: every one in the range."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return lambda exchange: calendars.sessions_between(exchange, first, last)


def emit_daily_events(
    trading_date: str, outlet_events: OutletEventAccessorsProtocol, run: RunContext
) -> list[str]:
    """Attach the events of the assets a daily run completed: its trading date, per exchange and timeframe.

    :param trading_date: the run's trading date, ISO text.
    :param outlet_events: the summary task's ``outlet_events``.
    :param run: the run.
    :return: the names of the assets given an event.
    """
    with market_connection() as conn:
        completions = run_completions(conn, run, daily_sessions(trading_date))
    return emit_events(outlet_events, completions, run)


def emit_backfill_events(
    request: BackfillRequestPayload | Mapping[str, Any],
    outlet_events: OutletEventAccessorsProtocol,
    run: RunContext,
) -> list[str]:
    """Attach the events of the assets a backfill completed: every session of its range there.

    :param request: the range ``validate`` returned.
    :param outlet_events: the summary task's ``outlet_events``.
    :param run: the run.
    :return: the names of the assets given an event.
    """
    with market_connection() as conn:
        completions = run_completions(conn, run, backfill_sessions(request["start"], request["end"]))
    return emit_events(outlet_events, completions, run)
