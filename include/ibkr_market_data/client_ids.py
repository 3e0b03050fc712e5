"""Lease TWS API client ids so that concurrent connections never share one (IB refuses it: 326).

Ids come from ``[first, first + count)``; an id IB still refuses stays leased until release, so
the next ``acquire`` moves past it. See docs/daily-dag.md.
"""

from __future__ import annotations

import random
import threading
from typing import Protocol

from psycopg import Connection
from psycopg.pq import TransactionStatus

from ibkr_market_data import repository
from ibkr_market_data.errors import ClientIdsExhaustedError


class ClientIdLease(Protocol):
    """Hands out client ids, each to one live connection at a time."""

    def acquire(self) -> int:
        """Lease a free id and return it; raise ClientIdsExhaustedError when none is left."""

    def release_all(self) -> None:
        """Give back every id this lease holds."""


def _candidates(first: int, count: int) -> list[int]:
    # A random starting point spreads concurrent workers over the range instead of all racing for `first`.
    offset = random.randrange(count)
    return [first + (offset + step) % count for step in range(count)]


class LocalClientIdLease:
    """Process-local lease, for a single process (CLI, tests, notebooks)."""

    _in_use: set[int] = set()
    _lock = threading.Lock()

    def __init__(self, first: int, count: int) -> None:
        self.first, self.count = first, count
        self.held: list[int] = []

    def acquire(self) -> int:
        """Lease an id no other lease of this process holds; raise ClientIdsExhaustedError if none."""
        with self._lock:
            for client_id in _candidates(self.first, self.count):
                if client_id not in self._in_use:
                    self._in_use.add(client_id)
                    self.held.append(client_id)
                    return client_id
        raise ClientIdsExhaustedError(
            f"All {self.count} client ids from {self.first} are in use in this process"
        )

    def release_all(self) -> None:
        """Give back every id this lease holds."""
        with self._lock:
            self._in_use.difference_update(self.held)
        self.held.clear()


class PostgresClientIdLease:
    """Lease shared by every worker: a session-level advisory lock per id on ``connection``.

    A crashed worker's locks vanish with its session. The connection may be the task's own: release
    rolls back an aborted transaction first (the locks outlive it), so it never hides the error.
    """

    def __init__(self, connection: Connection, first: int, count: int) -> None:
        self.connection = connection
        self.first, self.count = first, count
        self.held: list[int] = []

    def acquire(self) -> int:
        """Lease an id no worker holds; raise ClientIdsExhaustedError when every one is leased."""
        for client_id in _candidates(self.first, self.count):
            if client_id not in self.held and repository.try_lease_client_id(self.connection, client_id):
                self.held.append(client_id)
                return client_id
        raise ClientIdsExhaustedError(
            f"All {self.count} client ids from {self.first} are leased by other workers; "
            "widen the ibkr connection's client_id_range or lower the ibkr pool's slots"
        )

    def release_all(self) -> None:
        """Unlock every held id; on a closed connection they went with its session."""
        if self.held and not self.connection.closed:
            if self.connection.info.transaction_status == TransactionStatus.INERROR:
                self.connection.rollback()
            repository.release_client_ids(self.connection, self.held)
        self.held.clear()
