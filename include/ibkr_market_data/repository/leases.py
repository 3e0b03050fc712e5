"""Lease TWS client ids as session-level advisory locks, one per id, in the market-data database.

See docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import Connection

#: First key of the advisory lock pair, so our locks never clash with other applications'.
ADVISORY_LOCK_NAMESPACE = 0x1B_C1


def try_lease_client_id(conn: Connection, client_id: int) -> bool:
    """Lock ``client_id`` for this session unless another session holds it; return whether it is held."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, client_id))
        row = cursor.fetchone()
        return bool(row and row[0])


def release_client_ids(conn: Connection, client_ids: Iterable[int]) -> None:
    """Unlock ``client_ids`` held by this session; it needs a transaction that has not failed."""
    with conn.cursor() as cursor:
        for client_id in client_ids:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, client_id))
