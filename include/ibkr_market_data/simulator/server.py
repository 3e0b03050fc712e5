"""The TWS / IB Gateway simulator: an asyncio TCP server the unmodified ib_insync client talks to.

:class:`TwsSimulator` listens (on loopback unless told otherwise), keeps the client-id registry
(326 for an id in use, at most ``max_clients`` connections) and owns the state every connection
shares: the :class:`~ibkr_market_data.simulator.market.MarketModel`, the
:class:`~ibkr_market_data.simulator.faults.FaultPlan`, the
:class:`~ibkr_market_data.simulator.request_log.RequestLog` and the
:class:`~ibkr_market_data.simulator.rules.IbRules`. Each connection's messages are handled by
:class:`~ibkr_market_data.simulator.connection.ClientConnection`.

It runs on one event loop; tests that use the synchronous ib_insync client run it on its own thread
with :class:`ibkr_market_data.simulator.testing.SimulatorThread`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ibkr_market_data.simulator.faults import FaultPlan
from ibkr_market_data.simulator.market import MarketModel
from ibkr_market_data.simulator.request_log import RequestLog
from ibkr_market_data.simulator.rules import IbRules, PacingLimits, Violation

if TYPE_CHECKING:
    from ibkr_market_data.simulator.connection import ClientConnection
    from ibkr_market_data.universe import UniverseSymbol

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class SimulatorConfig:
    """How the simulator listens, what it serves and which IB limits it enforces.

    ``clock`` is the market's "now" (aware UTC; tests fix it); ``monotonic`` times the pacing
    windows. ``faults`` maps a symbol (or ``"*"``) to fault settings, as :meth:`FaultPlan.set`.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 42
    clock: Callable[[], dt.datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    account: str = "DU1234567"
    max_open_requests: int = 50
    max_clients: int = 32
    small_bar_max_seconds: int = 30
    small_bar_window_seconds: float = 600.0
    small_bar_window_limit: int = 60
    identical_request_seconds: float = 15.0
    per_contract_window_seconds: float = 2.0
    per_contract_limit: int = 6
    #: Time zone of an ``endDateTime`` without one (IB uses the TWS login time zone).
    login_time_zone: str = "UTC"
    #: Intraday requests spanning more bars than this get 162 "Time length exceed max.".
    max_bars_per_request: int = 100_000
    next_valid_id: int = 1
    faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: None: the project's universe files.
    universe: Sequence[UniverseSymbol] | None = None

    def pacing_limits(self) -> PacingLimits:
        return PacingLimits(
            max_open_requests=self.max_open_requests,
            small_bar_max_seconds=self.small_bar_max_seconds,
            small_bar_window_seconds=self.small_bar_window_seconds,
            small_bar_window_limit=self.small_bar_window_limit,
            identical_request_seconds=self.identical_request_seconds,
            per_contract_window_seconds=self.per_contract_window_seconds,
            per_contract_limit=self.per_contract_limit,
        )


@lru_cache(maxsize=4)
def shared_model(seed: int) -> MarketModel:
    """The model of the shipped universe for ``seed``, built once per process (its caches too)."""
    return MarketModel(seed)


class TwsSimulator:
    """One simulated TWS session. ``await start()``, connect clients to ``.port``, ``await stop()``."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.model = (
            shared_model(self.config.seed)
            if self.config.universe is None
            else MarketModel(self.config.seed, self.config.universe)
        )
        self.faults = FaultPlan(self.config.faults, seed=self.config.seed)
        self.request_log = RequestLog()
        self.rules = IbRules(self.config.pacing_limits(), self.config.monotonic)
        self.clients: dict[int, ClientConnection] = {}
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The simulator is not listening; await start() first")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return self.config.host

    async def start(self) -> None:
        from ibkr_market_data.simulator.connection import ClientConnection

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), self.config.host, self.config.port, reuse_address=True
        )
        log.info(
            "TWS simulator listening on %s:%s (seed %s, %s symbols, faults %s)",
            self.config.host,
            self.port,
            self.config.seed,
            len(self.model.contracts),
            self.faults.snapshot() or "none",
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None
        violations = self.violations()
        if violations:
            log.warning(
                "TWS simulator stopped: clients broke IB rules %s time(s): %s", len(violations), violations
            )
        else:
            log.info("TWS simulator stopped: %s requests served, no IB rule broken", len(self.request_log))

    def violations(self) -> list[Violation]:
        """Every IB rule a client broke (pacing, open-request cap, client ids); empty if none."""
        return self.rules.violations()

    def now(self) -> dt.datetime:
        return self.config.clock()

    def register_client(self, client_id: int, connection: ClientConnection) -> bool:
        """Claim ``client_id`` for ``connection``; False if another live connection holds it."""
        if client_id in self.clients:
            return False
        self.clients[client_id] = connection
        return True

    def unregister(self, connection: ClientConnection) -> None:
        self.connections.discard(connection)
        if connection.client_id is not None and self.clients.get(connection.client_id) is connection:
            del self.clients[connection.client_id]
