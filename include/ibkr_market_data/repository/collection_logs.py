"""``collection_logs``: one row per attempt to collect a symbol's window, and what a run did.

See docs/schema.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from psycopg import Connection, sql

from ibkr_market_data.bars import DAILY_TIMEFRAME

COLLECTION_TYPE = "historical"


class AttemptStatus(StrEnum):
    """``collection_logs.status``; members equal the stored strings."""

    PENDING = "pending"
    COMPLETED = "completed"
    NO_DATA = "no_data"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class RunContext:
    """Who is collecting: the Airflow run, or a CLI invocation."""

    dag_id: str
    run_id: str
    try_number: int = 1


def start_attempt(
    conn: Connection,
    run: RunContext,
    symbol_id: int,
    timeframe: str,
    start_date: dt.datetime,
    end_date: dt.datetime,
) -> int:
    """Record a ``pending`` attempt and return its row id; one row per (run, symbol, timeframe, window, try).

    :param start_date: the first session of the window requested.
    :param end_date: the last session of the window requested.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO collection_logs (symbol_id, collection_type, timeframe, start_date, end_date,
                                         status, dag_id, run_id, try_number)
            VALUES (%(symbol_id)s, %(collection_type)s, %(timeframe)s, %(start_date)s, %(end_date)s,
                    %(status)s, %(dag_id)s, %(run_id)s, %(try_number)s)
            ON CONFLICT ON CONSTRAINT collection_logs_one_row_per_attempt DO UPDATE SET
                status = %(status)s, started_at = NOW(), completed_at = NULL, error_message = NULL,
                error_code = NULL, records_collected = 0
            RETURNING id
            """,
            {
                "symbol_id": symbol_id,
                "collection_type": COLLECTION_TYPE,
                "timeframe": timeframe,
                "start_date": start_date,
                "end_date": end_date,
                "status": AttemptStatus.PENDING,
                "dag_id": run.dag_id,
                "run_id": run.run_id,
                "try_number": run.try_number,
            },
        )
        row = cursor.fetchone()
        assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING always returns the row
        return int(row[0])


def finish_attempt(
    conn: Connection,
    log_id: int,
    status: AttemptStatus,
    *,
    records_collected: int = 0,
    requests_sent: int = 0,
    error_message: str | None = None,
    error_code: int | None = None,
) -> None:
    """Record the outcome of attempt ``log_id``.

    :param log_id: the row ``start_attempt`` returned.
    :param records_collected: bars stored by the attempt.
    :param requests_sent: requests the attempt sent to IB.
    :param error_code: IB's error code, when IB sent one.
    """
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
    conn: Connection,
    run: RunContext,
    skipped: Iterable[tuple[int, str]],
    timeframe: str,
    start_date: dt.datetime,
    end_date: dt.datetime,
) -> int:
    """Record one ``skipped`` row per (symbol_id, reason), idempotent per run and try; return how many.

    :param skipped: (symbol id, reason) of each symbol the plan left alone.
    """
    rows = [
        (
            symbol_id,
            COLLECTION_TYPE,
            timeframe,
            start_date,
            end_date,
            AttemptStatus.SKIPPED,
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
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NOW())
            ON CONFLICT ON CONSTRAINT collection_logs_one_row_per_attempt DO NOTHING
            """,
            rows,
        )
    return len(rows)


#: ``latest``: the last attempt of each (symbol, window) of one run, the later try (then row)
#: winning. Parameters: ``dag_id``, ``run_id``.
_LATEST_ATTEMPTS = sql.SQL(
    """
    WITH latest AS (
        SELECT DISTINCT ON (symbol_id, timeframe, start_date)
               symbol_id, timeframe, status, error_message, error_code
        FROM collection_logs WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s
        ORDER BY symbol_id, timeframe, start_date, try_number DESC, id DESC
    )
    """
)


def run_summary(conn: Connection, dag_id: str, run_id: str) -> dict[str, int]:
    """Count the latest statuses of one run, one per symbol, timeframe and window."""
    with conn.cursor() as cursor:
        cursor.execute(
            _LATEST_ATTEMPTS + sql.SQL("SELECT status, COUNT(*) FROM latest GROUP BY status"),
            {"dag_id": dag_id, "run_id": run_id},
        )
        return {status: count for status, count in cursor.fetchall()}


def run_summary_by_timeframe(conn: Connection, dag_id: str, run_id: str) -> dict[str, dict[str, int]]:
    """Count the latest statuses of one run per timeframe, one per symbol and window."""
    with conn.cursor() as cursor:
        cursor.execute(
            _LATEST_ATTEMPTS + sql.SQL("SELECT timeframe, status, COUNT(*) FROM latest GROUP BY 1, 2"),
            {"dag_id": dag_id, "run_id": run_id},
        )
        summary: dict[str, dict[str, int]] = {}
        for timeframe, status, count in cursor.fetchall():
            summary.setdefault(timeframe, {})[status] = count
        return summary


def symbols_with_outcome(conn: Connection, dag_id: str, run_id: str) -> set[int]:
    """Return the symbols of the run whose every window's latest attempt reached a final status.

    Judged per window (a backfill sends one request per window): one finished window does not
    make a symbol finished while another is still ``pending``.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            _LATEST_ATTEMPTS
            + sql.SQL(
                "SELECT symbol_id FROM latest GROUP BY symbol_id HAVING bool_and(status <> %(pending)s)"
            ),
            {"dag_id": dag_id, "run_id": run_id, "pending": AttemptStatus.PENDING},
        )
        return {row[0] for row in cursor.fetchall()}


def symbols_failed(conn: Connection, dag_id: str, run_id: str) -> set[int]:
    """Return the symbols of the run with a window whose latest attempt failed."""
    with conn.cursor() as cursor:
        cursor.execute(
            _LATEST_ATTEMPTS + sql.SQL("SELECT DISTINCT symbol_id FROM latest WHERE status = %(failed)s"),
            {"dag_id": dag_id, "run_id": run_id, "failed": AttemptStatus.FAILED},
        )
        return {row[0] for row in cursor.fetchall()}


def run_records_collected(conn: Connection, dag_id: str, run_id: str) -> int:
    """Count the bars collected over every attempt of one run."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(records_collected), 0) FROM collection_logs"
            " WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def run_single_sessions(conn: Connection, dag_id: str, run_id: str) -> list[dt.date]:
    """Return the sessions a run attempted one at a time for daily bars, oldest first.

    For a daily run that is its trading date.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT end_date::date FROM collection_logs
            WHERE dag_id = %s AND run_id = %s AND start_date = end_date AND timeframe = %s ORDER BY 1
            """,
            (dag_id, run_id, DAILY_TIMEFRAME),
        )
        return [row[0] for row in cursor.fetchall()]


def run_failures(conn: Connection, dag_id: str, run_id: str) -> list[tuple[str, str, int | None]]:
    """Return (symbol, reason, IB code) of the symbols whose latest attempt in the run failed."""
    with conn.cursor() as cursor:
        cursor.execute(
            _LATEST_ATTEMPTS
            + sql.SQL(
                """
                SELECT s.symbol
                       || CASE WHEN latest.timeframe = %(daily)s THEN '' ELSE ' ' || latest.timeframe END,
                       latest.error_message, latest.error_code
                FROM latest JOIN symbols s ON s.id = latest.symbol_id
                WHERE latest.status = %(failed)s ORDER BY 1
                """
            ),
            {"dag_id": dag_id, "run_id": run_id, "failed": AttemptStatus.FAILED, "daily": DAILY_TIMEFRAME},
        )
        return [(symbol, reason, code) for symbol, reason, code in cursor.fetchall()]


def run_collected_listings(conn: Connection, dag_id: str, run_id: str) -> dict[tuple[str, str], int]:
    """Return the bars a run collected per (listing exchange, timeframe) it stored bars or no-data for.

    Only attempts that ended ``completed`` or ``no_data`` count: a run whose attempts were all
    skipped (nothing missing) or failed added nothing there.

    :param conn: an open connection to the market-data database.
    :param dag_id: the run's DAG.
    :param run_id: the run.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.primary_exchange, cl.timeframe, COALESCE(SUM(cl.records_collected), 0)
            FROM collection_logs cl JOIN symbols s ON s.id = cl.symbol_id
            WHERE cl.dag_id = %s AND cl.run_id = %s AND cl.status = ANY(%s)
            GROUP BY 1, 2
            """,
            (dag_id, run_id, [AttemptStatus.COMPLETED.value, AttemptStatus.NO_DATA.value]),
        )
        return {(exchange, timeframe): int(bars) for exchange, timeframe, bars in cursor.fetchall()}
