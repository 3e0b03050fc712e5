"""The TWS / IB Gateway simulator: an asyncio TCP server the unmodified ib_insync client talks to.

:class:`TwsSimulator` listens, keeps the client-id registry and owns the state its connections
share; it runs on one event loop. See docs/simulator.md#connections.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from functools import lru_cache

from tws_simulator.config import SimulatorConfig
from tws_simulator.connection import ClientConnection
from tws_simulator.faults import FaultPlan
from tws_simulator.ib_errors import NO_REQUEST, IbError
from tws_simulator.market import MarketModel
from tws_simulator.outage import ConnectivityOutage, HmdsOutage
from tws_simulator.request_log import RequestLog
from tws_simulator.rules import IbRules, Violation
from tws_simulator.served import ServedMarket
from tws_simulator.universe import Listing

__all__ = ["SimulatorConfig", "TwsSimulator", "shared_model"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def shared_model(universe: Sequence[Listing], seed: int) -> MarketModel:
    """Return the model of ``universe`` (a tuple) for ``seed``, built once per process (its caches too)."""
    return MarketModel(universe, seed)


class TwsSimulator:
    """One simulated TWS session. ``await start()``, connect clients to ``.port``, ``await stop()``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.model = shared_model(tuple(config.universe), config.seed)
        self.faults = FaultPlan(self.config.faults, seed=self.config.seed)
        #: What IB serves: the model after the market properties (the model tests compare with).
        self.served = ServedMarket(self.model, self.faults)
        self.request_log = RequestLog()
        self.rules = IbRules(self.config.pacing_limits(), self.config.monotonic)
        self.clients: dict[int, ClientConnection] = {}
        self.connections: set[ClientConnection] = set()
        self.outage = ConnectivityOutage(self.notify_all)
        self.hmds_outage = HmdsOutage(self.notify_all)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """Return the port the simulator listens on (the free one picked when configured with 0)."""
        if self._server is None:
            raise RuntimeError("The simulator is not listening; await start() first")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        """Return the address the simulator listens on."""
        return self.config.host

    async def start(self) -> None:
        """Start listening on the configured host and port."""
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
        """Stop listening, close every client's socket and log the IB rules clients broke."""
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
        """Return every IB rule a client broke (pacing, open-request cap, client ids); empty if none."""
        return self.rules.violations()

    def now(self) -> dt.datetime:
        """Return the market's now, from the configured clock."""
        return self.config.clock()

    def notify_all(self, notice: IbError) -> None:
        """Send ``notice`` (reqId -1) to every client past the handshake."""
        log.info("Notice to %s client(s): %s %s", len(self.clients), notice.code, notice.message)
        for connection in list(self.clients.values()):
            connection.send_error(NO_REQUEST, notice)

    def register_client(self, client_id: int, connection: ClientConnection) -> bool:
        """Claim ``client_id`` for ``connection``; False if another live connection holds it."""
        if client_id in self.clients:
            return False
        self.clients[client_id] = connection
        return True

    def unregister(self, connection: ClientConnection) -> None:
        """Forget ``connection`` and free its client id."""
        self.connections.discard(connection)
        if connection.client_id is not None and self.clients.get(connection.client_id) is connection:
            del self.clients[connection.client_id]
