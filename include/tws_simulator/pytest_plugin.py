"""Pytest fixtures that run the TWS simulator on a free loopback port for one test.

An installed ``tws-simulator`` registers the plugin; override ``tws_simulator_universe`` to say what
the market lists. See docs/simulator.md#pytest-plugin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from tws_simulator.config import SimulatorConfig
from tws_simulator.testing import SimulatorThread, fixed_clock
from tws_simulator.universe import Listing

if TYPE_CHECKING:
    from ib_insync import IB

#: The market "now" of simulators started by these fixtures unless ``clock`` is overridden:
#: a Monday, during neither exchange's session, with 2025's holidays behind it.
SIM_NOW = dt.datetime(2025, 6, 30, 12, 0, tzinfo=dt.UTC)

#: How long a test client waits for the simulator's connect-time replies.
CONNECT_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="session")
def tws_simulator_universe() -> Sequence[Listing]:
    """Return the listings every simulator of these fixtures serves; override it (``read_listings``)."""
    raise pytest.UsageError(
        "Override the tws_simulator_universe fixture with the listings to serve, "
        "e.g. tws_simulator.universe.read_listings([...csv files])"
    )


@pytest.fixture
def tws_simulator_factory(
    tws_simulator_universe: Sequence[Listing],
) -> Iterator[Callable[..., SimulatorThread]]:
    """Yield a function starting simulators with ``SimulatorConfig`` overrides; stop them after the test."""
    started: list[SimulatorThread] = []

    def start(**overrides: Any) -> SimulatorThread:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "clock": fixed_clock(SIM_NOW),
            "universe": tws_simulator_universe,
        }
        settings.update(overrides)
        simulator = SimulatorThread(SimulatorConfig(**settings)).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in reversed(started):
        simulator.stop()


@pytest.fixture
def tws_simulator(tws_simulator_factory: Callable[..., SimulatorThread]) -> SimulatorThread:
    """Return a started simulator, its market clock fixed at :data:`SIM_NOW`; stopped after the test."""
    return tws_simulator_factory()


@pytest.fixture
def ib_client_factory() -> Iterator[Callable[..., IB]]:
    """Yield a function connecting real ``ib_insync.IB`` clients to a simulator; disconnect them after."""
    from ib_insync import IB

    clients: list[IB] = []

    def connect(simulator: SimulatorThread, client_id: int = 1, readonly: bool = True, **options: Any) -> IB:
        ib = IB()
        clients.append(ib)
        ib.connect(
            simulator.host,
            simulator.port,
            clientId=client_id,
            readonly=readonly,
            timeout=options.pop("timeout", CONNECT_TIMEOUT_SECONDS),
            **options,
        )
        return ib

    yield connect
    for ib in clients:
        ib.disconnect()
