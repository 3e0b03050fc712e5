"""Open the market-data database for a task, and read which sessions are stored whole.

See docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from ibkr_market_data import repository
from ibkr_market_data.settings import MARKET_DATA_CONN_ID

if TYPE_CHECKING:
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from ibkr_market_data.repository import SymbolRow
    from ibkr_market_data.timeframes import Timeframe

log = logging.getLogger(__name__)


def market_db() -> PostgresHook:
    """Return the Airflow hook of the market-data connection."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DATA_CONN_ID)


def open_market_connection() -> psycopg.Connection:
    """Open a new connection to the market-data database; the caller closes it."""
    # The provider types get_conn() as a psycopg2 / psycopg 3 union; this deployment runs psycopg 3.
    return cast("psycopg.Connection", market_db().get_conn())


@contextmanager
def market_connection() -> Iterator[psycopg.Connection]:
    """Yield a connection to the market-data database (psycopg 3), closed on exit; the caller commits."""
    conn = open_market_connection()
    try:
        yield conn
    finally:
        conn.close()


def stored_sessions(
    conn: psycopg.Connection, tf: Timeframe, rows: Sequence[SymbolRow], start: dt.date, end: dt.date
) -> dict[int, set[dt.date]]:
    """Return per symbol the sessions from ``start`` to ``end`` whose ``tf`` bars are stored whole.

    Daily: the session's bar. Intraday: as many bars as the exchange's schedule holds that day,
    early closes included, or as many as IB settled it with (a halt, minutes without a trade); a
    symbol whose exchange has no calendar has none.
    """
    from ibkr_market_data.daily_plan import complete_sessions

    ids = [row.id for row in rows]
    if not tf.intraday:
        return repository.existing_bar_dates(conn, ids, tf.name, start, end)
    counts = _session_bar_counts(conn, tf, rows, start, end)
    complete = complete_sessions(rows, tf, counts)
    for symbol_id, settled in repository.settled_short_sessions(conn, ids, tf.name, start, end).items():
        stored = counts.get(symbol_id, {})
        whole = {day for day, bars in settled.items() if stored.get(day, 0) >= bars}
        if whole:
            complete[symbol_id] = complete.get(symbol_id, set()) | whole
    return complete


def sessions_with_bars(
    conn: psycopg.Connection, tf: Timeframe, rows: Sequence[SymbolRow], start: dt.date, end: dt.date
) -> dict[int, set[dt.date]]:
    """Return per symbol the sessions from ``start`` to ``end`` with at least one stored ``tf`` bar."""
    if not tf.intraday:
        return repository.existing_bar_dates(conn, [row.id for row in rows], tf.name, start, end)
    counts = _session_bar_counts(conn, tf, rows, start, end)
    return {symbol_id: set(sessions) for symbol_id, sessions in counts.items()}


def _session_bar_counts(
    conn: psycopg.Connection, tf: Timeframe, rows: Sequence[SymbolRow], start: dt.date, end: dt.date
) -> dict[int, dict[dt.date, int]]:
    """Return per symbol with an exchange calendar its stored ``tf`` bars per session."""
    from ibkr_market_data import calendars

    zones = {
        row.id: calendars.time_zone(row.primary_exchange)
        for row in rows
        if row.primary_exchange.upper() in calendars.CALENDAR_CODES
    }
    return repository.session_bar_counts(conn, zones, tf.name, start, end)
