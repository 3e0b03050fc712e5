"""Bounds on the dashboard's database work: its connections' timeouts and a cap on concurrent requests.

See docs/operations.md#limits.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar
from fastapi import HTTPException

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a client is told to wait (``Retry-After``) when the dashboard refuses with a 503.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class DashboardLimits:
    """How long the dashboard's database work may take, and how much of it runs at once."""

    #: Dashboard requests reading the database at once (per API-server worker); more get a 503 at once.
    max_requests: int = 4
    #: Seconds to open a connection (libpq's ``connect_timeout``: whole seconds, 2 at least).
    connect_timeout: int = 3
    #: Seconds one statement may run (PostgreSQL's ``statement_timeout``).
    statement_timeout: float = 10.0
    #: Seconds one statement may wait for a lock (PostgreSQL's ``lock_timeout``).
    lock_timeout: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DashboardLimits:
        """Return the limits set by ``IBKR_DASHBOARD_*``; a bad value is logged and its default kept."""
        default = cls()
        return cls(
            max_requests=int(_setting(environ, "IBKR_DASHBOARD_MAX_REQUESTS", default.max_requests, 1, 20)),
            connect_timeout=int(
                _setting(environ, "IBKR_DASHBOARD_CONNECT_TIMEOUT_SECONDS", default.connect_timeout, 2, 60)
            ),
            statement_timeout=_setting(
                environ, "IBKR_DASHBOARD_STATEMENT_TIMEOUT_SECONDS", default.statement_timeout, 0.1, 300
            ),
            lock_timeout=_setting(
                environ, "IBKR_DASHBOARD_LOCK_TIMEOUT_SECONDS", default.lock_timeout, 0.1, 300
            ),
        )

    def connect_args(self, conn_args: Mapping[str, Any]) -> dict[str, Any]:
        """Return psycopg ``connect()`` arguments with these timeouts and read-only transactions added.

        The connection's own ``options`` come first: PostgreSQL applies the last ``-c`` of a setting.
        """
        settings = (
            f"-c statement_timeout={round(self.statement_timeout * 1000)} "
            f"-c lock_timeout={round(self.lock_timeout * 1000)} "
            "-c default_transaction_read_only=on"
        )
        own_options = str(conn_args.get("options") or "").strip()
        return {
            **conn_args,
            "connect_timeout": self.connect_timeout,
            "options": f"{own_options} {settings}".strip(),
        }


def _setting(environ: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not minimum <= value <= maximum or (isinstance(default, int) and not value.is_integer()):
        log.warning("%s=%r is not a number from %s to %s; using %s", name, raw, minimum, maximum, default)
        return default
    return value


class RequestGate:
    """Run at most ``capacity`` requests' database work at once, on threads of its own; refuse the rest.

    The work runs on worker threads under this gate's own limiter, not the API server's shared one
    (AnyIO's 40 tokens, which also serve the Execution API's heartbeats), so a stuck database holds at
    most ``capacity`` threads and none of the shared tokens.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._active = 0
        self._lock = threading.Lock()
        # One limiter per event loop: an AnyIO limiter belongs to the loop that made it.
        self._limiter: RunVar[CapacityLimiter] = RunVar(f"market_data_dashboard_limiter_{id(self)}")

    @property
    def active(self) -> int:
        """Return how many requests' work is running now."""
        return self._active

    async def run(self, work: Callable[[], T]) -> T:
        """Return ``work()``, run on a thread of the gate's own.

        :raises HTTPException: 503 with ``Retry-After`` at once when ``capacity`` requests are running.
        """
        with self._lock:
            if self._active >= self.capacity:
                busy = True
            else:
                busy = False
                self._active += 1
        if busy:
            log.warning("Dashboard busy: %s requests are reading the database; refused one", self.capacity)
            raise HTTPException(
                status_code=503,
                detail=f"The dashboard is busy ({self.capacity} requests are reading the database); "
                f"retry in {RETRY_AFTER_SECONDS} s.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        try:
            # Not abandoned on cancel: the slot is held until the thread really ends.
            return await anyio.to_thread.run_sync(work, limiter=self._thread_limiter())
        finally:
            with self._lock:
                self._active -= 1

    def _thread_limiter(self) -> CapacityLimiter:
        try:
            return self._limiter.get()
        except LookupError:
            limiter = CapacityLimiter(self.capacity)
            self._limiter.set(limiter)
            return limiter
