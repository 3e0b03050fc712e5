"""What the read API and the exports read: listings by name, bars through a server-side cursor, outcomes.

See docs/reading-data.md and docs/exports.md. Every value is a bound parameter.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from psycopg import Connection

from ibkr_market_data.bars import Bar
from ibkr_market_data.repository.operations import MISSING_SESSIONS, _day_bounds


@dataclass(frozen=True)
class Listing:
    """The ``symbols`` row a symbol name reads."""

    id: int
    symbol: str
    primary_exchange: str
    first_available_date: dt.date | None


def listings(conn: Connection, names: Sequence[str] | None) -> list[Listing]:
    """Return the listing each of ``names`` reads, or every symbol's when ``names`` is None, by name.

    A name listed on several exchanges reads its active listing, then its oldest (as the dashboard
    does). Names not in ``symbols`` are left out: the caller compares.

    :param conn: an open connection to the market-data database.
    :param names: symbol names, or None for every symbol.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (symbol) id, symbol, primary_exchange, first_available_date FROM symbols
            WHERE %(every)s OR symbol = ANY(%(names)s)
            ORDER BY symbol, active DESC, id
            """,
            {"every": names is None, "names": list(names or ())},
        )
        return [Listing(*row) for row in cursor.fetchall()]


#: The columns of a batch from ``bar_batches``, in order. Prices are read as float8 (what pandas
#: holds them as): a NUMERIC(20,8) price below 10**7 round-trips exactly (15 significant digits).
BAR_COLUMNS = ("symbol_id", "timestamp", "open", "high", "low", "close", "volume", "wap", "bar_count")

#: Parameters: timeframe, symbol ids, first timestamp (included), stop timestamp (excluded). Ordered
#: by the primary key, so each monthly partition is read by an index scan and merged without a sort.
_BARS = """
    SELECT symbol_id, timestamp, open::float8, high::float8, low::float8, close::float8, volume,
           wap::float8, bar_count
    FROM market_data
    WHERE timeframe = %s AND symbol_id = ANY(%s) AND timestamp >= %s AND timestamp < %s
    ORDER BY symbol_id, timestamp
"""

#: The same, adjusted: ``adjusted_market_data`` (migration 0010) with the kinds as the first parameter.
_ADJUSTED_BARS = """
    SELECT symbol_id, "timestamp", open::float8, high::float8, low::float8, close::float8, volume,
           wap::float8, bar_count
    FROM adjusted_market_data(%s::text[])
    WHERE timeframe = %s AND symbol_id = ANY(%s) AND "timestamp" >= %s AND "timestamp" < %s
    ORDER BY symbol_id, "timestamp"
"""

_cursor_numbers = itertools.count(1)


def bar_batches(
    conn: Connection,
    symbol_ids: Sequence[int],
    timeframe: str,
    first: dt.datetime,
    stop: dt.datetime,
    batch_rows: int,
    adjust_for: Sequence[str] | None = None,
) -> Iterator[list[tuple[object, ...]]]:
    """Yield the bars of ``symbol_ids`` stamped in ``[first, stop)``, ``batch_rows`` at most at a time.

    Rows are ``BAR_COLUMNS`` tuples ordered by symbol id then timestamp, fetched through a
    server-side (named) cursor: the client holds one batch, whatever the range. A server-side cursor
    lives in a transaction: the caller opens one (``conn.transaction()``) around the iteration.

    :param conn: an open connection to the market-data database, in a transaction.
    :param symbol_ids: the symbols to read.
    :param timeframe: a ``market_data.timeframe`` name.
    :param first: the first timestamp to read (naive UTC, as stored), included.
    :param stop: the timestamp to stop at, excluded.
    :param batch_rows: the most rows one batch holds.
    :param adjust_for: adjusted rows, for these corporate-action kinds (checked by the caller); None: raw.
    """
    # A name per cursor: two reads may interleave on one connection.
    with conn.cursor(name=f"ibkr_bars_{next(_cursor_numbers)}", binary=True) as cursor:
        cursor.itersize = batch_rows
        if adjust_for is None:
            cursor.execute(_BARS, (timeframe, list(symbol_ids), first, stop))
        else:
            cursor.execute(_ADJUSTED_BARS, (list(adjust_for), timeframe, list(symbol_ids), first, stop))
        while batch := cursor.fetchmany(batch_rows):
            yield batch


#: Parameters: those of ``MISSING_SESSIONS`` and ``symbol_ids``.
_SESSION_OUTCOMES = (  # constant fragments only: values are bound
    "WITH"  # noqa: S608
    + MISSING_SESSIONS
    + "SELECT symbol_id, day, kind FROM missing WHERE symbol_id = ANY(%(symbol_ids)s)"
)


def session_outcomes(
    conn: Connection, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[tuple[int, dt.date], str]:
    """Return ``no_data`` or ``failed`` per (symbol id, session) of ``[start, end]`` that has either outcome.

    ``no_data``: IB sent no bar for it on two different days (settled in ``no_data_sessions``);
    ``failed``: an attempt whose window covers it failed. The dashboard's coverage counts the same
    pairs (``operations.MISSING_SESSIONS``). Stored bars are not looked at.

    :param conn: an open connection to the market-data database.
    :param symbol_ids: the symbols to look at.
    :param timeframe: a ``market_data.timeframe`` name.
    :param start: the first session date, included.
    :param end: the last session date, included.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            _SESSION_OUTCOMES,
            {"timeframe": timeframe, "symbol_ids": list(symbol_ids), **_day_bounds(start, end)},
        )
        return {(symbol_id, day): kind for symbol_id, day, kind in cursor.fetchall()}


@dataclass(frozen=True)
class PeriodFingerprint:
    """What an export compares: the rows of one symbol's period and a hash of their values."""

    rows: int
    content_hash: str


#: Named parameters: timeframe, symbol_ids, period ('month' or 'year'), zone (the sessions' time
#: zone, 'UTC' for daily bars, whose timestamp is their session's date), first, stop. The hash is the
#: sum of one 64-bit hash per row, so it does not depend on the order rows are read in, and any
#: change of a value, a new row or a removed one changes it, even one that left ``updated_at`` alone.
_PERIOD_FINGERPRINTS = """
    SELECT symbol_id,
           date_trunc(%(period)s, timestamp AT TIME ZONE 'UTC' AT TIME ZONE %(zone)s)::date AS period,
           count(*),
           sum(hashtextextended((timestamp, open, high, low, close, volume, wap, bar_count)::text, 0))::text
    FROM market_data
    WHERE timeframe = %(timeframe)s AND symbol_id = ANY(%(symbol_ids)s)
      AND timestamp >= %(first)s AND timestamp < %(stop)s
    GROUP BY 1, 2
"""


def period_fingerprints(
    conn: Connection,
    symbol_ids: Sequence[int],
    timeframe: str,
    period: str,
    zone: str,
    first: dt.datetime,
    stop: dt.datetime,
) -> dict[tuple[int, dt.date], PeriodFingerprint]:
    """Return a ``PeriodFingerprint`` per (symbol id, first day of the period) with bars in ``[first, stop)``.

    :param conn: an open connection to the market-data database.
    :param symbol_ids: the symbols to look at.
    :param timeframe: a ``market_data.timeframe`` name.
    :param period: ``month`` or ``year``: what one export file holds.
    :param zone: the time zone whose dates name the sessions of these symbols (``UTC`` for daily bars).
    :param first: the first timestamp to read (naive UTC, as stored), included.
    :param stop: the timestamp to stop at, excluded.
    """
    if period not in ("month", "year"):
        raise ValueError(f"period must be 'month' or 'year', not {period!r}")
    with conn.cursor() as cursor:
        cursor.execute(
            "SET LOCAL jit = off"
        )  # costed high on a year of 1-minute bars; compiling only slows it
        cursor.execute(
            _PERIOD_FINGERPRINTS,
            {
                "timeframe": timeframe,
                "symbol_ids": list(symbol_ids),
                "period": period,
                "zone": zone,
                "first": first,
                "stop": stop,
            },
        )
        return {
            (symbol_id, day): PeriodFingerprint(int(rows), str(content_hash))
            for symbol_id, day, rows, content_hash in cursor.fetchall()
        }


def session_bars(conn: Connection, symbol_id: int, timeframe: str, day: dt.date, time_zone: str) -> list[Bar]:
    """Return the symbol's stored intraday ``timeframe`` bars of session ``day`` (dated in ``time_zone``)."""
    from zoneinfo import ZoneInfo

    start = dt.datetime.combine(day, dt.time(0), ZoneInfo(time_zone))
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), ZoneInfo(time_zone))
    rows = conn.execute(
        """
        SELECT timestamp, open, high, low, close, volume, wap, bar_count FROM market_data
        WHERE symbol_id = %s AND timeframe = %s AND timestamp >= %s AND timestamp < %s
        ORDER BY timestamp
        """,
        (symbol_id, timeframe, _naive_utc(start), _naive_utc(end)),
    ).fetchall()
    return [Bar(*row) for row in rows]


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
