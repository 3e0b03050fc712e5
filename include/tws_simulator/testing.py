"""Run the simulator on a thread of its own, for tests, benchmarks and local tasks.

The synchronous ib_insync client runs its own event loop, which the simulator must not share.
See docs/simulator.md#start-it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from tws_simulator.config import SimulatorConfig
from tws_simulator.faults import FaultPlan
from tws_simulator.market import MarketModel
from tws_simulator.request_log import RequestLog
from tws_simulator.rules import Violation
from tws_simulator.served import ServedMarket
from tws_simulator.server import TwsSimulator

log = logging.getLogger(__name__)

#: Building the model (calendars, universe) takes a few seconds on the first start in a process.
START_TIMEOUT_SECONDS = 60.0


def fixed_clock(moment: dt.datetime) -> Callable[[], dt.datetime]:
    """Return a ``SimulatorConfig.clock`` that always answers ``moment`` (aware; converted to UTC)."""
    if moment.tzinfo is None:
        raise ValueError("fixed_clock needs an aware datetime, e.g. datetime(2025, 6, 30, 12, tzinfo=UTC)")
    frozen = moment.astimezone(dt.UTC)
    return lambda: frozen


class SettableClock:
    """A ``SimulatorConfig.clock`` a test moves between requests: the day IB answers "as of"."""

    def __init__(self, moment: dt.datetime) -> None:
        self._lock = threading.Lock()
        self._now = self._checked(moment)

    @staticmethod
    def _checked(moment: dt.datetime) -> dt.datetime:
        if moment.tzinfo is None:
            raise ValueError("SettableClock needs an aware datetime, e.g. datetime(2025, 6, 30, tzinfo=UTC)")
        return moment.astimezone(dt.UTC)

    def __call__(self) -> dt.datetime:
        """Return the market's now."""
        with self._lock:
            return self._now

    def set(self, moment: dt.datetime) -> None:
        """Make ``moment`` (aware) the market's now."""
        with self._lock:
            self._now = self._checked(moment)

    def advance(self, delta: dt.timedelta) -> None:
        """Move the market's now on by ``delta``."""
        with self._lock:
            self._now += delta


class ManualMonotonic:
    """A ``SimulatorConfig.monotonic`` that moves only when told: pacing windows without waiting."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Return the current reading."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self._lock:
            self._now += seconds


class SimulatorThread:
    """A :class:`TwsSimulator` serving on its own thread and event loop; a context manager.

    Example::

        with SimulatorThread(SimulatorConfig(seed=7, universe=read_listings(["universe.csv"]))) as sim:
            ib.connect(sim.host, sim.port, clientId=1)
            sim.faults.set("AAPL", no_permission=True)
            ...
            assert sim.violations() == []
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.simulator = TwsSimulator(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- what tests use --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Return the address the simulator listens on."""
        return self.config.host

    @property
    def port(self) -> int:
        """Return the port the simulator listens on."""
        return self.simulator.port

    @property
    def faults(self) -> FaultPlan:
        """Return the simulator's faults, to set while it serves."""
        return self.simulator.faults

    @property
    def request_log(self) -> RequestLog:
        """Return every request the simulator received, with its outcome."""
        return self.simulator.request_log

    @property
    def model(self) -> MarketModel:
        """Return the market model, to compare what a client stored with the bars served."""
        return self.simulator.model

    @property
    def served(self) -> ServedMarket:
        """What IB serves as of a moment: the model after the market properties in force."""
        return self.simulator.served

    def violations(self) -> list[Violation]:
        """Return every IB rule a client broke; empty if every client behaved."""
        return self.simulator.violations()

    def connected_client_ids(self) -> set[int]:
        """Return the client ids of the live connections (read across threads: a snapshot)."""
        return set(self.simulator.clients)

    @contextlib.contextmanager
    def paused(self, at_most: float = 60.0) -> Iterator[None]:
        """Hold the simulator's event loop for the block: it reads, answers and times out nothing.

        Clients' bytes wait in the kernel meanwhile. A test kills a client here and, once the
        kernel holds the socket's end, resumes: the end is read before any answer that fell due.
        The loop resumes after ``at_most`` seconds whatever the block does.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("SimulatorThread not started")
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(at_most)

        loop.call_soon_threadsafe(hold)
        try:
            if not holding.wait(at_most):
                raise TimeoutError(f"The simulator's loop did not pause within {at_most:g} s")
            yield
        finally:
            release.set()

    # -- lifetime --------------------------------------------------------------------------------

    def start(self) -> SimulatorThread:
        """Start serving on a new daemon thread; return once the simulator listens.

        :raises TimeoutError: if it does not listen within :data:`START_TIMEOUT_SECONDS`.
        :raises RuntimeError: if it was started already, or failed to start.
        """
        if self._thread is not None:
            raise RuntimeError("SimulatorThread already started")
        self._thread = threading.Thread(target=self._serve, name="tws-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS):
            raise TimeoutError(f"The TWS simulator did not start within {START_TIMEOUT_SECONDS:g}s")
        if self._startup_error is not None:
            raise RuntimeError(
                f"The TWS simulator failed to start: {self._startup_error}"
            ) from self._startup_error
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.simulator.start())
        except BaseException as exc:  # reported to the starting thread
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.simulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Stop the simulator and its thread; nothing happens if it is not running."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if thread.is_alive():
            log.warning("The TWS simulator thread did not stop within 10 s")
        self._thread = None
        self._loop = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
