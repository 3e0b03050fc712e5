"""Keep every worker within IB's hard pacing limits (bars of 30 s or less, head timestamps).

Each paced request is a row in ``ib_pacing_ledger``; a worker decides under an advisory lock, so
workers take turns. Daily bars are not paced. See docs/daily-dag.md.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from psycopg import Connection

from ibkr_market_data import repository
from ibkr_market_data.repository import SentRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacingRules:
    """IB's pacing rules; the defaults are IB's.

    At most ``window_limit`` requests in any ``window`` seconds; no identical request within
    ``identical_gap``; fewer than ``per_contract_limit`` for one contract within ``per_contract_window``.
    """

    window: float = 600.0
    window_limit: int = 60
    identical_gap: float = 15.0
    per_contract_window: float = 2.0
    per_contract_limit: int = 6
    #: Added to every wait: IB times a request when it arrives, we when it leaves.
    safety_margin: float = 0.25

    @property
    def horizon(self) -> float:
        """Return how far back the rules look, in seconds."""
        return max(self.window, self.identical_gap, self.per_contract_window)


def seconds_until_allowed(
    rules: PacingRules, history: Sequence[SentRequest], contract_key: str, request_key: str, now: float
) -> float:
    """Return the seconds to wait before sending; 0 when every rule allows it now. Oldest history first."""
    waits = [0.0]
    recent = [r for r in history if now - r.sent_at < rules.window]
    if len(recent) >= rules.window_limit:
        waits.append(recent[-rules.window_limit].sent_at + rules.window - now)
    identical = [r for r in history if r.request_key == request_key and now - r.sent_at < rules.identical_gap]
    if identical:
        waits.append(identical[-1].sent_at + rules.identical_gap - now)
    same_contract = [
        r for r in history if r.contract_key == contract_key and now - r.sent_at < rules.per_contract_window
    ]
    if len(same_contract) >= rules.per_contract_limit - 1:
        waits.append(same_contract[-(rules.per_contract_limit - 1)].sent_at + rules.per_contract_window - now)
    wait = max(waits)
    return wait + rules.safety_margin if wait > 0 else 0.0


def minimum_duration(requests: int, small_bars: bool, in_flight: int, latency: float) -> float:
    """Return a lower bound on the wall time of ``requests`` under IB's rules (for dry runs)."""
    if requests <= 0:
        return 0.0
    bound = math.ceil(requests / max(in_flight, 1)) * latency
    if small_bars:
        rules = PacingRules()
        bound = max(bound, (math.ceil(requests / rules.window_limit) - 1) * rules.window)
    return bound


class PostgresPacer:
    """Callable ``(contract_key, request_key)`` that blocks until IB's rules allow the request.

    :param connect: returns a new psycopg connection to the market-data database.
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        rules: PacingRules | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connect = connect
        self.rules = rules or PacingRules()
        self.sleep = sleep

    def __call__(self, contract_key: str, request_key: str) -> None:
        """Block until the request may be sent, and record it."""
        self.wait_turn(contract_key, request_key)

    def wait_turn(self, contract_key: str, request_key: str) -> float:
        """Record the request once it may be sent; return the seconds waited."""
        waited = 0.0
        conn = self.connect()
        try:
            while True:
                repository.lock_pacing_ledger(conn)
                history, now = repository.recent_requests(conn, self.rules.horizon)
                wait = seconds_until_allowed(self.rules, history, contract_key, request_key, now)
                if wait <= 0:
                    repository.record_request(conn, contract_key, request_key, self.rules.horizon * 2)
                conn.commit()  # releases the advisory lock
                if wait <= 0:
                    return waited
                log.info("IB pacing: waiting %.1f s before %s", wait, request_key)
                self.sleep(wait)
                waited += wait
        finally:
            conn.close()
