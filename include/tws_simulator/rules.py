"""IB's limits on historical requests and connections, enforced as IB enforces them.

Every breach is recorded as a :class:`Violation` of the client. The limits, their defaults and
what a breach gets: docs/simulator.md#ibs-rules.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tws_simulator import ib_errors
from tws_simulator.ib_errors import IbError

#: Rule names used in :class:`Violation`.
RULE_MAX_OPEN_REQUESTS = "max_open_requests"
RULE_IDENTICAL_REQUEST = "pacing_identical_request"
RULE_PER_CONTRACT = "pacing_per_contract"
RULE_SMALL_BAR_WINDOW = "pacing_small_bar_window"
RULE_DUPLICATE_CLIENT_ID = "duplicate_client_id"
RULE_MAX_CLIENTS = "max_clients"


@dataclass(frozen=True)
class Violation:
    """One IB rule a client broke."""

    rule: str
    client_id: int | None
    req_id: int | None
    detail: str
    at: dt.datetime


@dataclass(frozen=True)
class PacingLimits:
    """The limits :class:`IbRules` enforces; the defaults are IB's."""

    max_open_requests: int = 50
    small_bar_max_seconds: int = 30
    small_bar_window_seconds: float = 600.0
    small_bar_window_limit: int = 60
    identical_request_seconds: float = 15.0
    per_contract_window_seconds: float = 2.0
    per_contract_limit: int = 6


@dataclass(frozen=True)
class PacedRequest:
    """What the small-bar rules compare about one request.

    ``identity`` for the identical-request rule, ``contract_key`` (contract, exchange, whatToShow)
    for the per-contract rule.
    """

    identity: Hashable
    contract_key: Hashable
    weight: int = 1


class IbRules:
    """The open-request cap, the small-bar pacing windows and the violation record.

    Called from the server's event loop only, except :meth:`violations`, which is thread-safe.
    """

    def __init__(self, limits: PacingLimits, monotonic: Callable[[], float]) -> None:
        self.limits = limits
        self._monotonic = monotonic
        self._open: set[tuple[int, int]] = set()
        self._window: deque[float] = deque()
        self._per_contract: dict[Hashable, deque[float]] = {}
        self._last_identical: dict[Hashable, float] = {}
        self._violations: list[Violation] = []
        self._lock = threading.Lock()

    @property
    def open_requests(self) -> int:
        """Return how many historical requests are open across all clients."""
        return len(self._open)

    def is_small(self, bar_seconds: int | None) -> bool:
        """Return whether a bar size falls under the small-bar pacing rules."""
        return bar_seconds is not None and bar_seconds <= self.limits.small_bar_max_seconds

    def admit(self, client_id: int, req_id: int, paced: PacedRequest | None) -> IbError | None:
        """Open a historical request, or return the error refusing it (and record the violation)."""
        limits = self.limits
        if len(self._open) >= limits.max_open_requests:
            self.record(RULE_MAX_OPEN_REQUESTS, client_id, req_id, f"{len(self._open)} requests already open")
            return ib_errors.too_many_open_requests(limits.max_open_requests)
        if paced is not None:
            refusal = self._check_pacing(client_id, req_id, paced)
            if refusal is not None:
                return refusal
        self._open.add((client_id, req_id))
        return None

    def _check_pacing(self, client_id: int, req_id: int, paced: PacedRequest) -> IbError | None:
        limits = self.limits
        now = self._monotonic()
        while self._window and self._window[0] <= now - limits.small_bar_window_seconds:
            self._window.popleft()
        contract_times = self._per_contract.setdefault(paced.contract_key, deque())
        while contract_times and contract_times[0] <= now - limits.per_contract_window_seconds:
            contract_times.popleft()
        last = self._last_identical.get(paced.identity)
        if last is not None and now - last < limits.identical_request_seconds:
            self.record(
                RULE_IDENTICAL_REQUEST,
                client_id,
                req_id,
                f"identical request {now - last:.1f}s after the last "
                f"(< {limits.identical_request_seconds:g}s)",
            )
            return ib_errors.pacing_violation()
        if len(contract_times) + 1 >= limits.per_contract_limit:
            self.record(
                RULE_PER_CONTRACT,
                client_id,
                req_id,
                f"{len(contract_times) + 1} requests for {paced.contract_key} within "
                f"{limits.per_contract_window_seconds:g}s (limit: fewer than {limits.per_contract_limit})",
            )
            return ib_errors.pacing_violation()
        if len(self._window) + paced.weight > limits.small_bar_window_limit:
            self.record(
                RULE_SMALL_BAR_WINDOW,
                client_id,
                req_id,
                f"more than {limits.small_bar_window_limit} small-bar requests within "
                f"{limits.small_bar_window_seconds:g}s",
            )
            return ib_errors.pacing_violation()
        self._window.extend([now] * paced.weight)
        contract_times.append(now)
        self._last_identical[paced.identity] = now
        return None

    def release(self, client_id: int, req_id: int) -> None:
        """Close an open request (answered, failed, cancelled or its client gone)."""
        self._open.discard((client_id, req_id))

    def record(self, rule: str, client_id: int | None, req_id: int | None, detail: str) -> None:
        """Record that a client broke ``rule``; thread-safe."""
        with self._lock:
            self._violations.append(Violation(rule, client_id, req_id, detail, dt.datetime.now(dt.UTC)))

    def violations(self) -> list[Violation]:
        """Return every rule broken so far, oldest first; empty if every client behaved."""
        with self._lock:
            return list(self._violations)
