"""``ib_pacing_ledger``: every paced request any worker sent, read and written under one lock.

See docs/daily-dag.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import Connection

#: The transaction-level advisory lock under which workers read and append the ledger one at a time.
PACING_LOCK_KEY = 0x1BC1_0001


@dataclass(frozen=True)
class SentRequest:
    """One row of the ledger."""

    contract_key: str
    request_key: str
    sent_at: float  # epoch seconds


def lock_pacing_ledger(conn: Connection) -> None:
    """Wait for the ledger's lock; the transaction's commit or rollback releases it."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (PACING_LOCK_KEY,))


def recent_requests(conn: Connection, horizon: float) -> tuple[list[SentRequest], float]:
    """Return the requests of the last ``horizon`` seconds, oldest first, and the database's clock.

    Times are epoch seconds by the database's clock, not the worker's, so every worker measures
    against the same one.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT contract_key, request_key, EXTRACT(EPOCH FROM sent_at)::float8,
                   EXTRACT(EPOCH FROM clock_timestamp())::float8
            FROM ib_pacing_ledger
            WHERE sent_at > clock_timestamp() - make_interval(secs => %s)
            ORDER BY sent_at
            """,
            (horizon,),
        )
        rows = cursor.fetchall()
        if rows:
            now = rows[0][3]
        else:
            cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
            clock = cursor.fetchone()
            assert clock is not None  # a SELECT without FROM returns its one row
            now = clock[0]
    return [SentRequest(contract, request, sent_at) for contract, request, sent_at, _ in rows], float(now)


def record_request(conn: Connection, contract_key: str, request_key: str, keep_seconds: float) -> None:
    """Append a request sent now, and forget those older than ``keep_seconds``.

    :param contract_key: the contract the request was for, as the pacing rules compare them.
    :param request_key: the request itself, so an identical one within the window is recognised.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ib_pacing_ledger (contract_key, request_key) VALUES (%s, %s)",
            (contract_key, request_key),
        )
        cursor.execute(
            "DELETE FROM ib_pacing_ledger WHERE sent_at < clock_timestamp() - make_interval(secs => %s)",
            (keep_seconds,),
        )
