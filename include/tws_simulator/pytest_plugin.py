"""Pytest fixtures that run the TWS simulator on a free loopback port for one test.

Load it with ``pytest_plugins = ["tws_simulator.pytest_plugin"]`` (an installed ``tws-simulator``
registers it by itself) and override ``tws_simulator_universe`` to say what the market lists:

``tws_simulator_universe`` the listings every simulator of these fixtures serves; must be
                           overridden (e.g. ``read_listings([...csv files])``)
``tws_simulator``          a started :class:`~tws_simulator.testing.SimulatorThread` with the
                           default configuration and the market clock fixed at :data:`SIM_NOW`;
                           stopped after the test.
``tws_simulator_factory``  call with ``SimulatorConfig`` field overrides (``seed=7``,
                           ``faults={...}``, ``clock=...``, compressed pacing windows, ...); every
                           simulator it started is stopped after the test.
``ib_client_factory``      connects real ``ib_insync.IB`` clients to a simulator and disconnects
                           them after the test.
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
    raise pytest.UsageError(
        "Override the tws_simulator_universe fixture with the listings to serve, "
        "e.g. tws_simulator.universe.read_listings([...csv files])"
    )


@pytest.fixture
def tws_simulator_factory(
    tws_simulator_universe: Sequence[Listing],
) -> Iterator[Callable[..., SimulatorThread]]:
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
    return tws_simulator_factory()


@pytest.fixture
def ib_client_factory() -> Iterator[Callable[..., IB]]:
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
