"""Every SQL statement of the collector, with values always bound as parameters.

Functions take an open DB-API connection from ``PostgresHook.get_conn()`` (psycopg 3) and leave
transaction control to the caller, so a symbol's bars and its log row commit together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ibkr_market_data.bars import Bar
from ibkr_market_data.universe import UniverseSymbol

COLLECTION_TYPE = "historical"


@dataclass(frozen=True)
class SymbolRow:
    id: int
    symbol: str
    exchange: str
    primary_exchange: str
    currency: str
    sec_type: str
    con_id: int | None
    priority: int
    active: bool


_SYMBOL_COLUMNS = "id, symbol, exchange, primary_exchange, currency, sec_type, con_id, priority, active"


# -- symbols ----------------------------------------------------------------------------------


def upsert_universe(conn: Any, symbols: Iterable[UniverseSymbol]) -> int:
    """Insert new symbols (inactive until resolved) and refresh list facts of known ones; returns rows touched."""
    rows = [
        (
            s.symbol,
            s.exchange,
            s.primary_exchange,
            s.currency,
            s.sec_type,
            s.priority,
            s.asset_class,
            s.name,
            s.source_list,
        )
        for s in symbols
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO symbols (symbol, exchange, primary_exchange, currency, sec_type, priority,
                                 asset_class, name, source_list)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (symbol, primary_exchange, currency) DO UPDATE SET
                exchange = EXCLUDED.exchange, sec_type = EXCLUDED.sec_type,
                priority = EXCLUDED.priority, asset_class = EXCLUDED.asset_class,
                name = EXCLUDED.name, source_list = EXCLUDED.source_list, updated_at = NOW()
            WHERE (symbols.exchange, symbols.sec_type, symbols.priority, symbols.asset_class,
                   symbols.name, symbols.source_list)
                  IS DISTINCT FROM (EXCLUDED.exchange, EXCLUDED.sec_type, EXCLUDED.priority,
                                    EXCLUDED.asset_class, EXCLUDED.name, EXCLUDED.source_list)
            """,
            rows,
        )
    return len(rows)


def unresolved_symbols(conn: Any) -> list[SymbolRow]:
    """Symbols with no conId yet."""
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT {_SYMBOL_COLUMNS} FROM symbols WHERE con_id IS NULL ORDER BY id")  # noqa: S608
        return [SymbolRow(*row) for row in cursor.fetchall()]


def mark_resolved(conn: Any, symbol_id: int, con_id: int, primary_exchange: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbols SET con_id = %s, primary_exchange = %s, active = TRUE, inactive_reason = NULL,
                               resolved_at = NOW(), updated_at = NOW()
            WHERE id = %s
            """,
            (con_id, primary_exchange, symbol_id),
        )


def mark_unresolved(conn: Any, symbol_id: int, reason: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE symbols SET active = FALSE, inactive_reason = %s, updated_at = NOW() WHERE id = %s",
            (reason, symbol_id),
        )


def select_symbols(
    conn: Any,
    *,
    symbols: Sequence[str] | None = None,
    exchanges: Sequence[str] | None = None,
    priority: str = "all",
    active_only: bool = True,
) -> list[SymbolRow]:
    """Symbols matching the filters, high priority first. ``priority``: ``all``, ``high`` (1) or ``low`` (>1)."""
    clauses, params = [], []
    if active_only:
        clauses.append("active")
    if symbols:
        clauses.append("symbol = ANY(%s)")
        params.append(list(symbols))
    if exchanges:
        clauses.append("(primary_exchange = ANY(%s) OR exchange = ANY(%s))")
        params += [list(exchanges), list(exchanges)]
    if priority == "high":
        clauses.append("priority = 1")
    elif priority == "low":
        clauses.append("priority > 1")
    elif priority != "all":
        raise ValueError(f"priority must be all, high or low, not {priority!r}")
    where = " AND ".join(clauses) or "TRUE"
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {_SYMBOL_COLUMNS} FROM symbols WHERE {where} ORDER BY priority, symbol",  # noqa: S608
            params,
        )
        return [SymbolRow(*row) for row in cursor.fetchall()]


def has_active_symbols(conn: Any) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM symbols WHERE active)")
        row = cursor.fetchone()
        return bool(row and row[0])


def known_symbol_names(conn: Any) -> set[str]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT DISTINCT symbol FROM symbols")
        return {row[0] for row in cursor.fetchall()}


# -- market data ------------------------------------------------------------------------------


def symbols_having_bar(
    conn: Any, symbol_ids: Sequence[int], timeframe: str, timestamp: dt.datetime
) -> set[int]:
    """The dedupe check: which of ``symbol_ids`` already have their bar at ``timestamp``."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT symbol_id FROM market_data WHERE symbol_id = ANY(%s) AND timeframe = %s AND timestamp = %s",
            (list(symbol_ids), timeframe, timestamp),
        )
        return {row[0] for row in cursor.fetchall()}


def existing_bar_dates(
    conn: Any, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[int, set[dt.date]]:
    """Per symbol, the dates in ``[start, end]`` that already have a bar."""
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


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    revised: int

    @property
    def written(self) -> int:
        return self.inserted + self.revised


def upsert_bars(conn: Any, symbol_id: int, timeframe: str, bars: Sequence[Bar]) -> UpsertResult:
    """Bulk UPSERT on (symbol, timeframe, timestamp) through COPY into a temporary table.

    Unchanged bars are left alone; a bar whose values differ replaces the stored one (IB adjusts
    history after the fact) and is counted as revised. Nothing is ever deleted.
    """
    if not bars:
        return UpsertResult(0, 0)
    with conn.cursor() as cursor:
        if len(bars) <= ARRAY_UPSERT_MAX_BARS:
            # A daily run writes one bar: arrays in one statement spare a temporary table per task.
            columns = list(zip(*(_bar_row(bar) for bar in bars), strict=True))
            cursor.execute(_UPSERT_ARRAY_BARS, (symbol_id, timeframe, *map(list, columns)))
        else:
            _stage_bars(cursor, bars)
            cursor.execute(_UPSERT_STAGED_BARS, (symbol_id, timeframe))
        flags = [row[0] for row in cursor.fetchall()]
    inserted = sum(1 for flag in flags if flag)
    return UpsertResult(inserted=inserted, revised=len(flags) - inserted)


#: Up to this many bars go in one statement of arrays; more go through COPY.
ARRAY_UPSERT_MAX_BARS = 64


def _bar_row(bar: Bar) -> tuple[object, ...]:
    return (bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.bar_count)


def _stage_bars(cursor: Any, bars: Sequence[Bar]) -> None:
    """COPY ``bars`` into the session's ``incoming_bars`` table, emptied first.

    ``ON COMMIT DELETE ROWS`` empties it only at commit, so two calls in one transaction would
    otherwise see each other's bars.
    """
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
    RETURNING (xmax = 0) AS inserted
"""

_INSERT_BARS = """
    INSERT INTO market_data AS md (symbol_id, timeframe, timestamp, open, high, low, close,
                                   volume, wap, bar_count)
"""

#: Parameters: symbol_id, timeframe. Returns one ``inserted`` flag per row written.
_UPSERT_STAGED_BARS = (  # constant fragments only: values are bound
    _INSERT_BARS  # noqa: S608
    + "SELECT %s, %s, timestamp, open, high, low, close, volume, wap, bar_count FROM incoming_bars"
    + _ON_CONFLICT_COMPARE
)

#: Parameters: symbol_id, timeframe, then one array per column in ``_bar_row`` order.
_UPSERT_ARRAY_BARS = (  # constant fragments only: values are bound
    _INSERT_BARS  # noqa: S608
    + """SELECT %s, %s, * FROM unnest(%s::timestamp[], %s::numeric[], %s::numeric[], %s::numeric[],
                                       %s::numeric[], %s::bigint[], %s::numeric[], %s::integer[])"""
    + _ON_CONFLICT_COMPARE
)


# -- collection logs --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """Who is collecting: the Airflow run, or a CLI invocation."""

    dag_id: str
    run_id: str
    try_number: int = 1


def start_attempt(
    conn: Any,
    run: RunContext,
    symbol_id: int,
    timeframe: str,
    start_date: dt.datetime,
    end_date: dt.datetime,
) -> int:
    """Record a ``pending`` attempt; one row per (run, symbol, timeframe, window, try)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO collection_logs (symbol_id, collection_type, timeframe, start_date, end_date,
                                         status, dag_id, run_id, try_number)
            VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s)
            ON CONFLICT ON CONSTRAINT collection_logs_one_row_per_attempt DO UPDATE SET
                status = 'pending', started_at = NOW(), completed_at = NULL, error_message = NULL,
                error_code = NULL, records_collected = 0
            RETURNING id
            """,
            (
                symbol_id,
                COLLECTION_TYPE,
                timeframe,
                start_date,
                end_date,
                run.dag_id,
                run.run_id,
                run.try_number,
            ),
        )
        return int(cursor.fetchone()[0])


def finish_attempt(
    conn: Any,
    log_id: int,
    status: str,
    *,
    records_collected: int = 0,
    requests_sent: int = 0,
    error_message: str | None = None,
    error_code: int | None = None,
) -> None:
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE collection_logs SET status = %s, records_collected = %s, requests_sent = %s,
                   error_message = %s, error_code = %s, completed_at = NOW()
            WHERE id = %s
            """,
            (status, records_collected, requests_sent, error_message, error_code, log_id),
        )


def log_skipped(
    conn: Any,
    run: RunContext,
    skipped: Iterable[tuple[int, str]],
    timeframe: str,
    start_date: dt.datetime,
    end_date: dt.datetime,
) -> int:
    """One ``skipped`` row per (symbol_id, reason), idempotent per run and try."""
    rows = [
        (
            symbol_id,
            COLLECTION_TYPE,
            timeframe,
            start_date,
            end_date,
            reason,
            run.dag_id,
            run.run_id,
            run.try_number,
        )
        for symbol_id, reason in skipped
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO collection_logs (symbol_id, collection_type, timeframe, start_date, end_date,
                                         status, error_message, dag_id, run_id, try_number, completed_at)
            VALUES (%s, %s, %s, %s, %s, 'skipped', %s, %s, %s, %s, NOW())
            ON CONFLICT ON CONSTRAINT collection_logs_one_row_per_attempt DO NOTHING
            """,
            rows,
        )
    return len(rows)


def run_summary(conn: Any, dag_id: str, run_id: str) -> dict[str, int]:
    """Latest status per symbol of one run, counted."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT status, COUNT(*) FROM (
                SELECT DISTINCT ON (symbol_id, start_date) status
                FROM collection_logs WHERE dag_id = %s AND run_id = %s
                ORDER BY symbol_id, start_date, try_number DESC, id DESC
            ) latest GROUP BY status
            """,
            (dag_id, run_id),
        )
        return {status: count for status, count in cursor.fetchall()}


def symbols_with_outcome(conn: Any, dag_id: str, run_id: str) -> set[int]:
    """Symbols of the run whose latest attempt reached a final status."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id FROM (
                SELECT DISTINCT ON (symbol_id, start_date) symbol_id, status
                FROM collection_logs WHERE dag_id = %s AND run_id = %s
                ORDER BY symbol_id, start_date, try_number DESC, id DESC
            ) latest WHERE status <> 'pending'
            """,
            (dag_id, run_id),
        )
        return {row[0] for row in cursor.fetchall()}


def run_records_collected(conn: Any, dag_id: str, run_id: str) -> int:
    """Bars collected over every attempt of one run."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(records_collected), 0) FROM collection_logs WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def run_failures(conn: Any, dag_id: str, run_id: str) -> list[tuple[str, str, int | None]]:
    """(symbol, reason, IB code) of the symbols whose latest attempt in the run failed."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.symbol, latest.error_message, latest.error_code FROM (
                SELECT DISTINCT ON (symbol_id, start_date) symbol_id, status, error_message, error_code
                FROM collection_logs WHERE dag_id = %s AND run_id = %s
                ORDER BY symbol_id, start_date, try_number DESC, id DESC
            ) latest JOIN symbols s ON s.id = latest.symbol_id
            WHERE latest.status = 'failed' ORDER BY s.symbol
            """,
            (dag_id, run_id),
        )
        return list(cursor.fetchall())


# -- backfill ---------------------------------------------------------------------------------


def no_data_session_dates(
    conn: Any, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[int, set[dt.date]]:
    """Per symbol, the sessions in ``[start, end]`` recorded as having no data at IB."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, session FROM no_data_sessions
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND session BETWEEN %s AND %s
            """,
            (list(symbol_ids), timeframe, start, end),
        )
        found: dict[int, set[dt.date]] = {}
        for symbol_id, session in cursor.fetchall():
            found.setdefault(symbol_id, set()).add(session)
        return found


def record_no_data_sessions(
    conn: Any, symbol_id: int, timeframe: str, sessions: Iterable[dt.date], reason: str, run: RunContext
) -> int:
    """Record sessions IB sent no bar for; a session seen again keeps ``first_seen`` and gets the new reason."""
    rows = [
        (symbol_id, timeframe, session, reason, run.dag_id, run.run_id) for session in sorted(set(sessions))
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO no_data_sessions (symbol_id, timeframe, session, reason, dag_id, run_id)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (symbol_id, timeframe, session) DO UPDATE SET
                reason = EXCLUDED.reason, last_seen = NOW(), dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id
            """,
            rows,
        )
    return len(rows)


def first_available_dates(conn: Any, symbol_ids: Sequence[int]) -> dict[int, dt.date]:
    """``symbols.first_available_date`` of the symbols that have one (IB's head timestamp)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT id, first_available_date FROM symbols WHERE id = ANY(%s) AND first_available_date IS NOT NULL",
            (list(symbol_ids),),
        )
        return dict(cursor.fetchall())


def set_first_available_date(conn: Any, symbol_id: int, day: dt.date) -> None:
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE symbols SET first_available_date = %s, updated_at = NOW() WHERE id = %s", (day, symbol_id)
        )


def store_backfilled_bars(
    conn: Any, symbol_id: int, timeframe: str, bars: Sequence[Bar], run: RunContext
) -> UpsertResult:
    """Write a backfill response: plain COPY where nothing is stored, else compare and log revisions.

    Where the symbol has no bar yet in the response's span (the usual case: the span was a gap),
    the bars are copied straight into ``market_data``, the fastest bulk path. Where it has some
    (a request that bridges stored sessions, or another run stored them meanwhile: a unique
    violation rolls back to a savepoint), every fetched bar is compared with the stored one: equal
    bars are left alone, changed ones are replaced and their old and new values written to
    ``bar_revisions``. Sessions that now have a bar leave ``no_data_sessions``.
    """
    if not bars:
        return UpsertResult(0, 0)
    import psycopg

    first, last = min(bar.timestamp for bar in bars), max(bar.timestamp for bar in bars)
    with conn.cursor() as cursor:
        # One round trip for both questions: this path is timed in bars per second.
        cursor.execute(
            """
            SELECT EXISTS (SELECT 1 FROM market_data
                           WHERE symbol_id = %s AND timeframe = %s AND timestamp BETWEEN %s AND %s),
                   EXISTS (SELECT 1 FROM no_data_sessions
                           WHERE symbol_id = %s AND timeframe = %s AND session BETWEEN %s AND %s)
            """,
            (symbol_id, timeframe, first, last, symbol_id, timeframe, first.date(), last.date()),
        )
        overlaps_stored, overlaps_no_data = cursor.fetchone()
        result = None
        if not overlaps_stored:
            try:
                with conn.transaction():
                    _copy_new_bars(cursor, symbol_id, timeframe, bars)
                result = UpsertResult(inserted=len(bars), revised=0)
            except psycopg.errors.UniqueViolation:
                result = None  # stored by someone else since the check: compare instead
        if result is None:
            _stage_bars(cursor, bars)
            cursor.execute(
                """
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
                WHERE (md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count)
                      IS DISTINCT FROM (i.open, i.high, i.low, i.close, i.volume, i.wap, i.bar_count)
                """,
                (run.dag_id, run.run_id, symbol_id, timeframe),
            )
            cursor.execute(_UPSERT_STAGED_BARS, (symbol_id, timeframe))
            flags = [row[0] for row in cursor.fetchall()]
            inserted = sum(1 for flag in flags if flag)
            result = UpsertResult(inserted=inserted, revised=len(flags) - inserted)
        if overlaps_no_data:
            cursor.execute(
                """
                DELETE FROM no_data_sessions
                WHERE symbol_id = %s AND timeframe = %s AND session = ANY(%s)
                """,
                (symbol_id, timeframe, [bar.timestamp.date() for bar in bars]),
            )
    return result


def _copy_new_bars(cursor: Any, symbol_id: int, timeframe: str, bars: Sequence[Bar]) -> None:
    with cursor.copy(
        "COPY market_data (symbol_id, timeframe, timestamp, open, high, low, close, volume, wap, bar_count)"
        " FROM STDIN"
    ) as copy:
        for bar in bars:
            copy.write_row((symbol_id, timeframe, *_bar_row(bar)))


def run_backfill_totals(conn: Any, dag_id: str, run_id: str) -> dict[str, int]:
    """What one backfill run did: requests, bars collected, revisions and no-data sessions recorded."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT COALESCE(SUM(requests_sent), 0), COALESCE(SUM(records_collected), 0)
            FROM collection_logs WHERE dag_id = %s AND run_id = %s
            """,
            (dag_id, run_id),
        )
        requests, bars = cursor.fetchone()
        cursor.execute(
            "SELECT COUNT(*) FROM bar_revisions WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
        )
        revisions = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COUNT(*) FROM no_data_sessions WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
        )
        no_data = cursor.fetchone()[0]
    return {
        "requests_sent": int(requests),
        "bars_collected": int(bars),
        "bars_revised": int(revisions),
        "no_data_sessions": int(no_data),
    }
