"""``market_data`` and ``bar_revisions``: stored bars, written by UPSERT, and the changes IB made to them.

See docs/schema.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import Connection, Cursor

from ibkr_market_data.bars import DAILY_TIMEFRAME, Bar
from ibkr_market_data.repository.collection_logs import RunContext
from ibkr_market_data.repository.partitions import ensure_partitions
from ibkr_market_data.timeframes import session_date

log = logging.getLogger(__name__)


def symbols_having_bar(
    conn: Connection, symbol_ids: Sequence[int], timeframe: str, timestamp: dt.datetime
) -> set[int]:
    """Return which of ``symbol_ids`` already have their ``timeframe`` bar at ``timestamp``."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT symbol_id FROM market_data"
            " WHERE symbol_id = ANY(%s) AND timeframe = %s AND timestamp = %s",
            (list(symbol_ids), timeframe, timestamp),
        )
        return {row[0] for row in cursor.fetchall()}


def existing_bar_dates(
    conn: Connection, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[int, set[dt.date]]:
    """Return, per symbol, the dates in ``[start, end]`` that already have a ``timeframe`` bar."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, timestamp::date FROM market_data
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND timestamp >= %s AND timestamp < %s
            """,
            (list(symbol_ids), timeframe, start, end + dt.timedelta(days=1)),
        )
        found: dict[int, set[dt.date]] = {}
        for symbol_id, day in cursor.fetchall():
            found.setdefault(symbol_id, set()).add(day)
        return found


def bars_by_session(
    conn: Connection, symbol_id: int, timeframe: str, start: dt.date, end: dt.date
) -> dict[dt.date, Bar]:
    """Return the symbol's stored ``timeframe`` bars dated ``start`` to ``end``, by date (daily bars)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT timestamp, open, high, low, close, volume, wap, bar_count FROM market_data
            WHERE symbol_id = %s AND timeframe = %s AND timestamp >= %s AND timestamp < %s
            """,
            (symbol_id, timeframe, start, end + dt.timedelta(days=1)),
        )
        return {row[0].date(): Bar(*row) for row in cursor.fetchall()}


@dataclass(frozen=True)
class UpsertResult:
    """How many bars a write inserted, and how many replaced a stored bar that differed."""

    inserted: int
    revised: int


#: Set to 1 to make every transaction that writes bars wait for its commit to be flushed to disk.
SYNCHRONOUS_BAR_COMMITS_VARIABLE = "IBKR_SYNCHRONOUS_BAR_COMMITS"


def synchronous_bar_commits(environ: Mapping[str, str] = os.environ) -> bool:
    """Return whether transactions writing bars wait for the disk flush at commit (off by default).

    A value other than 0/1 (or false/true, off/on) logs a warning and waits: a typo errs on the
    durable side.
    """
    raw = environ.get(SYNCHRONOUS_BAR_COMMITS_VARIABLE, "").strip().lower()
    if raw in ("", "0", "false", "off"):
        return False
    if raw not in ("1", "true", "on"):
        log.warning(
            "%s=%r is not 0 or 1: bar commits wait for the disk", SYNCHRONOUS_BAR_COMMITS_VARIABLE, raw
        )
    return True


def lock_symbol_writes(conn: Connection, symbol_id: int, timeframe: str) -> None:
    """Wait until no other transaction writes ``timeframe`` bars of ``symbol_id``; hold that until commit.

    Compare-and-write reads the table as of its statement's start: a writer that does not wait would
    miss bars another one commits meanwhile, losing their revisions and counting them as inserted.
    A hash collision between two keys only makes their writers wait for each other.

    In the same statement, unless ``IBKR_SYNCHRONOUS_BAR_COMMITS`` says otherwise, the transaction is
    let commit without waiting for the disk (``synchronous_commit = off`` until it ends). Safe for bar
    writes: a server crash loses at most the last few such commits, each whole (bars and their
    collection-log rows together), and the next run collects those bars again as missing. See
    docs/schema.md#asynchronous-bar-commits.
    """
    key = f"market_data:{symbol_id}:{timeframe}"
    with conn.cursor() as cursor:
        if synchronous_bar_commits():
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        else:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)),"
                " set_config('synchronous_commit', 'off', true)",
                (key,),
            )


def bar_sessions(
    conn: Connection, symbol_id: int, timeframe: str, bars: Iterable[Bar], time_zone: str = ""
) -> list[dt.date]:
    """Return the sessions ``bars`` belong to, sorted: a daily bar's date, an intraday bar's date in its zone.

    :param time_zone: the exchange's zone for intraday bars; empty to read the symbol's listing
        exchange from ``symbols`` (which builds its calendar).
    """
    if timeframe == DAILY_TIMEFRAME:
        return sorted({bar.timestamp.date() for bar in bars})
    zone = time_zone or _listing_time_zone(conn, symbol_id)
    return sorted({session_date(bar.timestamp, zone) for bar in bars})


def _listing_time_zone(conn: Connection, symbol_id: int) -> str:
    """Return the time zone of the symbol's listing exchange; UTC where no calendar knows it."""
    from ibkr_market_data import calendars
    from ibkr_market_data.errors import UnknownExchangeError

    with conn.cursor() as cursor:
        cursor.execute("SELECT primary_exchange FROM symbols WHERE id = %s", (symbol_id,))
        row = cursor.fetchone()
    if row is None:
        return "UTC"
    try:
        return calendars.time_zone(row[0])
    except UnknownExchangeError:
        # Such a symbol is never planned; bars written by hand are dated in UTC.
        log.warning("Symbol %s: no calendar for %r; its bars' sessions are UTC dates", symbol_id, row[0])
        return "UTC"


def upsert_bars(
    conn: Connection,
    symbol_id: int,
    timeframe: str,
    bars: Sequence[Bar],
    run: RunContext | None = None,
    time_zone: str = "",
) -> UpsertResult:
    """UPSERT ``bars`` on (symbol, timeframe, timestamp): arrays in one statement, or COPY when many.

    A bar whose values differ, once rounded to the columns' scale, replaces the stored one (IB adjusts
    history) and counts as revised; unchanged bars are left alone. Nothing is ever deleted from
    ``market_data``. Writers of one (symbol, timeframe) take turns (``lock_symbol_writes``) until the
    caller's transaction ends, which commits without waiting for the disk
    (see ``lock_symbol_writes``). Many bars with a run take ``store_backfilled_bars``' path: COPY
    straight into the table where none of their span is stored.

    :param bars: bars with distinct timestamps (``bars.latest_per_timestamp``): one statement
        cannot write a row twice.
    :param run: with it, a revised bar's old and new values go to ``bar_revisions``, and the
        sessions that now have a bar leave ``no_data_sessions``, in the same statement.
    :param time_zone: intraday bars only: the exchange's zone, which names a bar's session; empty to
        look it up (see ``bar_sessions``).
    """
    if not bars:
        return UpsertResult(0, 0)
    if run is not None and len(bars) > ARRAY_UPSERT_MAX_BARS:
        return _store_new_or_compared(conn, symbol_id, timeframe, bars, run, time_zone)
    first, last = min(bar.timestamp for bar in bars), max(bar.timestamp for bar in bars)
    lock_symbol_writes(conn, symbol_id, timeframe)
    ensure_partitions(conn, timeframe, first, last)
    audit = (run.dag_id, run.run_id) if run is not None else None
    sessions = bar_sessions(conn, symbol_id, timeframe, bars, time_zone) if audit is not None else []
    with conn.cursor() as cursor:
        if len(bars) <= ARRAY_UPSERT_MAX_BARS:
            # A daily run writes a few bars: arrays in one statement spare a temporary table per task.
            columns = [list(column) for column in zip(*(_bar_row(bar) for bar in bars), strict=True)]
            if audit is None:
                cursor.execute(_UPSERT_ARRAY_BARS, (symbol_id, timeframe, *columns))
            else:
                cursor.execute(
                    _UPSERT_ARRAY_BARS_AUDITED,
                    {"symbol_id": symbol_id, "timeframe": timeframe, "dag_id": audit[0], "run_id": audit[1]}
                    | {"first": first, "last": last, "sessions": sessions}
                    | dict(zip(_ARRAY_COLUMNS, columns, strict=True)),
                )
        else:  # many bars and no run: nothing to record
            _stage_bars(cursor, bars)
            cursor.execute(_UPSERT_STAGED_BARS, (symbol_id, timeframe))
        return _counted(cursor)


#: Up to this many bars go in one statement of arrays; more go through COPY.
ARRAY_UPSERT_MAX_BARS = 64


def _bar_row(bar: Bar) -> tuple[object, ...]:
    """Return the values of ``bar`` in ``incoming_bars`` column order."""
    return (bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.bar_count)


def _counted(cursor: Cursor) -> UpsertResult:
    """Count the result of an UPSERT that returned one ``inserted`` flag per row written."""
    flags = [row[0] for row in cursor.fetchall()]
    inserted = sum(1 for flag in flags if flag)
    return UpsertResult(inserted=inserted, revised=len(flags) - inserted)


def _stage_bars(cursor: Cursor, bars: Sequence[Bar]) -> None:
    """COPY ``bars`` into the session's ``incoming_bars`` table, emptied first.

    ``ON COMMIT DELETE ROWS`` empties it only at commit, so two calls in one transaction would
    otherwise see each other's bars.
    """
    # The prices have the columns' type: COPY rounds them as market_data would, before any comparison.
    cursor.execute(
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS incoming_bars (
            timestamp TIMESTAMP, open NUMERIC(20,8), high NUMERIC(20,8), low NUMERIC(20,8),
            close NUMERIC(20,8), volume BIGINT, wap NUMERIC(20,8), bar_count INTEGER
        ) ON COMMIT DELETE ROWS
        """
    )
    cursor.execute("DELETE FROM incoming_bars")
    with cursor.copy(
        "COPY incoming_bars (timestamp, open, high, low, close, volume, wap, bar_count) FROM STDIN"
    ) as copy:
        for bar in bars:
            copy.write_row(_bar_row(bar))


_ON_CONFLICT_COMPARE = """
    ON CONFLICT (symbol_id, timeframe, timestamp) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        volume = EXCLUDED.volume, wap = EXCLUDED.wap, bar_count = EXCLUDED.bar_count,
        updated_at = NOW()
    WHERE (md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count)
          IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                            EXCLUDED.volume, EXCLUDED.wap, EXCLUDED.bar_count)
    RETURNING md.symbol_id, md.timeframe, md.timestamp
"""

_INSERT_BARS = """
    INSERT INTO market_data AS md (symbol_id, timeframe, timestamp, open, high, low, close,
                                   volume, wap, bar_count)
"""

#: Closes the ``written`` CTE (the UPSERT) and flags each row it wrote as inserted or not. A partitioned
#: table cannot return ``xmax``, but the outer query sees the table as before the statement (exact
#: only while no other transaction writes the same rows: ``lock_symbol_writes``).
_FLAG_WRITTEN = """
)
SELECT stored.symbol_id IS NULL AS inserted
FROM written
LEFT JOIN market_data stored
  ON stored.symbol_id = written.symbol_id AND stored.timeframe = written.timeframe
 AND stored.timestamp = written.timestamp
"""

#: Parameters: symbol_id, timeframe. Returns one ``inserted`` flag per row written.
_UPSERT_STAGED_BARS = (  # constant fragments only: values are bound
    "WITH written AS ("  # noqa: S608
    + _INSERT_BARS
    + "SELECT %s, %s, timestamp, open, high, low, close, volume, wap, bar_count FROM incoming_bars"
    + _ON_CONFLICT_COMPARE
    + _FLAG_WRITTEN
)

#: Parameters: symbol_id, timeframe, then one array per column in ``_bar_row`` order.
_UPSERT_ARRAY_BARS = (  # constant fragments only: values are bound
    "WITH written AS ("  # noqa: S608
    + _INSERT_BARS
    + """SELECT %s, %s, * FROM unnest(%s::timestamp[], %s::numeric(20,8)[], %s::numeric(20,8)[],
                                       %s::numeric(20,8)[], %s::numeric(20,8)[], %s::bigint[],
                                       %s::numeric(20,8)[], %s::integer[])"""
    + _ON_CONFLICT_COMPARE
    + _FLAG_WRITTEN
)


_ARRAY_COLUMNS = ("timestamps", "opens", "highs", "lows", "closes", "volumes", "waps", "bar_counts")

#: Incoming prices are cast to the columns' type, NUMERIC(20,8), first: a 9th decimal is not a revision.
_AUDIT_INCOMING = """
    WITH incoming AS (
        SELECT * FROM unnest(%(timestamps)s::timestamp[], %(opens)s::numeric(20,8)[],
                             %(highs)s::numeric(20,8)[], %(lows)s::numeric(20,8)[],
                             %(closes)s::numeric(20,8)[], %(volumes)s::bigint[],
                             %(waps)s::numeric(20,8)[], %(bar_counts)s::integer[])
            AS i(timestamp, open, high, low, close, volume, wap, bar_count)
    ), revised AS (
        INSERT INTO bar_revisions (
            symbol_id, timeframe, timestamp,
            old_open, old_high, old_low, old_close, old_volume, old_wap, old_bar_count,
            new_open, new_high, new_low, new_close, new_volume, new_wap, new_bar_count, dag_id, run_id)
        SELECT md.symbol_id, md.timeframe, md.timestamp,
               md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count,
               i.open, i.high, i.low, i.close, i.volume, i.wap, i.bar_count, %(dag_id)s, %(run_id)s
        FROM incoming i
        JOIN market_data md
          ON md.symbol_id = %(symbol_id)s AND md.timeframe = %(timeframe)s AND md.timestamp = i.timestamp
         AND md.timestamp BETWEEN %(first)s AND %(last)s
        WHERE (md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count)
              IS DISTINCT FROM (i.open, i.high, i.low, i.close, i.volume, i.wap, i.bar_count)
    ), no_longer_empty AS (
        DELETE FROM no_data_sessions
        WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s
          AND session = ANY(%(sessions)s::date[])
    )
"""

#: Named parameters: symbol_id, timeframe, dag_id, run_id, first, last (the bars' first and last
#: timestamps), sessions (``bar_sessions``) and ``_ARRAY_COLUMNS``. The CTEs see the table before the
#: statement: the old values.
_UPSERT_ARRAY_BARS_AUDITED = (  # constant fragments only: values are bound
    _AUDIT_INCOMING  # noqa: S608
    + ", written AS ("
    + _INSERT_BARS
    + "SELECT %(symbol_id)s, %(timeframe)s, * FROM incoming"
    + _ON_CONFLICT_COMPARE
    + _FLAG_WRITTEN
)

#: Parameters: dag_id, run_id, symbol_id, timeframe, first and last timestamp of the bars (so that
#: only the partitions holding them are read); compares ``incoming_bars`` with what is stored.
_RECORD_STAGED_REVISIONS = """
    INSERT INTO bar_revisions (
        symbol_id, timeframe, timestamp,
        old_open, old_high, old_low, old_close, old_volume, old_wap, old_bar_count,
        new_open, new_high, new_low, new_close, new_volume, new_wap, new_bar_count,
        dag_id, run_id)
    SELECT md.symbol_id, md.timeframe, md.timestamp,
           md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count,
           i.open, i.high, i.low, i.close, i.volume, i.wap, i.bar_count, %s, %s
    FROM incoming_bars i
    JOIN market_data md ON md.symbol_id = %s AND md.timeframe = %s AND md.timestamp = i.timestamp
                       AND md.timestamp BETWEEN %s AND %s
    WHERE (md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count)
          IS DISTINCT FROM (i.open, i.high, i.low, i.close, i.volume, i.wap, i.bar_count)
"""

#: Parameters: symbol_id, timeframe, session dates that now have a bar.
_FORGET_NO_DATA = """
    DELETE FROM no_data_sessions WHERE symbol_id = %s AND timeframe = %s AND session = ANY(%s)
"""


def store_backfilled_bars(
    conn: Connection,
    symbol_id: int,
    timeframe: str,
    bars: Sequence[Bar],
    run: RunContext,
    time_zone: str = "",
) -> UpsertResult:
    """Store a backfill response: plain COPY where nothing is stored yet, else compare and log revisions.

    A span with stored bars (a request bridging stored sessions, or another run storing them
    meanwhile) is compared bar by bar as ``upsert_bars`` does with ``run``, and takes turns with
    other writers the same way. Sessions that now have a bar leave ``no_data_sessions``.

    :param bars: bars with distinct timestamps, as for ``upsert_bars``.
    :param run: the run that revisions in ``bar_revisions`` are credited to.
    :param time_zone: as for ``upsert_bars``.
    """
    if not bars:
        return UpsertResult(0, 0)
    return _store_new_or_compared(conn, symbol_id, timeframe, bars, run, time_zone)


def _store_new_or_compared(
    conn: Connection, symbol_id: int, timeframe: str, bars: Sequence[Bar], run: RunContext, time_zone: str
) -> UpsertResult:
    """COPY ``bars`` straight into ``market_data`` when none of their span is stored, else compare.

    The one path of ``store_backfilled_bars`` and of ``upsert_bars`` with a run and many bars.
    """
    first, last = min(bar.timestamp for bar in bars), max(bar.timestamp for bar in bars)
    ensure_partitions(conn, timeframe, first, last)
    sessions = bar_sessions(conn, symbol_id, timeframe, bars, time_zone)
    with conn.cursor() as cursor:
        # One round trip (this path is timed in bars per second): the lock, then both questions in a
        # statement of their own (its snapshot taken once the lock is held), then a savepoint.
        with conn.pipeline():
            lock_symbol_writes(conn, symbol_id, timeframe)
            cursor.execute(
                """
                SELECT EXISTS (SELECT 1 FROM market_data
                               WHERE symbol_id = %s AND timeframe = %s AND timestamp BETWEEN %s AND %s),
                       EXISTS (SELECT 1 FROM no_data_sessions
                               WHERE symbol_id = %s AND timeframe = %s AND session BETWEEN %s AND %s)
                """,
                (symbol_id, timeframe, first, last, symbol_id, timeframe, sessions[0], sessions[-1]),
            )
            # For the straight COPY below. Never released: the caller's commit ends it (a round trip less).
            conn.execute("SAVEPOINT copy_new_bars")
        overlaps = cursor.fetchone()
        assert overlaps is not None  # a SELECT without FROM returns its one row
        overlaps_stored, overlaps_no_data = overlaps
        result = None
        if not overlaps_stored:
            try:
                _copy_new_bars(cursor, symbol_id, timeframe, bars)
                result = UpsertResult(inserted=len(bars), revised=0)
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT copy_new_bars")
                result = None  # stored by someone else since the check: compare instead
        if result is None:
            _stage_bars(cursor, bars)
            cursor.execute(
                _RECORD_STAGED_REVISIONS, (run.dag_id, run.run_id, symbol_id, timeframe, first, last)
            )
            cursor.execute(_UPSERT_STAGED_BARS, (symbol_id, timeframe))
            result = _counted(cursor)
        if overlaps_no_data:
            cursor.execute(_FORGET_NO_DATA, (symbol_id, timeframe, sessions))
    return result


def _copy_new_bars(cursor: Cursor, symbol_id: int, timeframe: str, bars: Sequence[Bar]) -> None:
    """COPY ``bars`` straight into ``market_data``; a stored one raises UniqueViolation."""
    with cursor.copy(
        "COPY market_data (symbol_id, timeframe, timestamp, open, high, low, close, volume, wap, bar_count)"
        " FROM STDIN"
    ) as copy:
        for bar in bars:
            copy.write_row((symbol_id, timeframe, *_bar_row(bar)))


def session_bar_counts(
    conn: Connection,
    symbol_zones: Mapping[int, str],
    timeframe: str,
    start: dt.date,
    end: dt.date,
) -> dict[int, dict[dt.date, int]]:
    """Return, per symbol, how many intraday ``timeframe`` bars are stored per session in ``[start, end]``.

    Daily bars are read by ``existing_bar_dates``.

    :param symbol_zones: each symbol's exchange time zone, which names a bar's session.
    """
    counts: dict[int, dict[dt.date, int]] = {}
    for symbol_id, session, *_, count in intraday_session_totals(conn, symbol_zones, timeframe, start, end):
        counts.setdefault(symbol_id, {})[session] = count
    return counts


def intraday_session_totals(
    conn: Connection,
    symbol_zones: Mapping[int, str],
    timeframe: str,
    start: dt.date,
    end: dt.date,
) -> list[tuple[int, dt.date, Decimal, Decimal, int, int]]:
    """Return the intraday ``timeframe`` bars stored per session in ``[start, end]``, summed up.

    Each row is (symbol id, session, highest high, lowest low, total volume, bars).

    :param symbol_zones: each symbol's exchange time zone: a bar's session is its start's date there
        (an ASX session begins the UTC day before).
    """
    if not symbol_zones:
        return []
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT md.symbol_id, (md.timestamp AT TIME ZONE 'UTC' AT TIME ZONE z.zone)::date AS session,
                   max(md.high), min(md.low), sum(md.volume)::bigint, count(*)
            FROM market_data md
            JOIN unnest(%s::integer[], %s::text[]) AS z(symbol_id, zone) ON z.symbol_id = md.symbol_id
            WHERE md.timeframe = %s AND md.timestamp >= %s AND md.timestamp < %s
            GROUP BY 1, 2
            """,
            (
                list(symbol_zones),
                list(symbol_zones.values()),
                timeframe,
                start - dt.timedelta(days=1),
                end + dt.timedelta(days=2),
            ),
        )
        return [row for row in cursor.fetchall() if start <= row[1] <= end]
