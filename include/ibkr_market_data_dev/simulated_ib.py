"""The TWS simulator as the collector's local IB: it serves the collector's shipped universe.

The simulator (``tws_simulator``) and the collector (``ibkr_market_data``) know nothing of each
other; this module joins them for the local stack, the tests and the benchmarks.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ibkr_market_data.bars import Bar
from ibkr_market_data.universe import UNIVERSE_FILES
from tws_simulator.config import SimulatorConfig
from tws_simulator.market import SimBar
from tws_simulator.universe import Listing, read_listings


def shipped_universe_files() -> list[Path]:
    """The collector's universe CSV files, which the simulator reads as its market."""
    package = resources.files("ibkr_market_data.universe")
    return [Path(str(package.joinpath(name))) for name in UNIVERSE_FILES]


@cache
def shipped_listings() -> tuple[Listing, ...]:
    return read_listings(shipped_universe_files())


def simulator_config(**overrides: Any) -> SimulatorConfig:
    """A ``SimulatorConfig`` serving the shipped universe, with ``overrides`` applied."""
    settings: dict[str, Any] = {"universe": shipped_listings(), **overrides}
    return SimulatorConfig(**settings)


def stored_bar(bar: SimBar) -> Bar:
    """The ``Bar`` the collector stores for a simulated daily bar (tests and benchmarks compare or seed with it)."""
    return Bar(
        dt.datetime.combine(bar.date, dt.time()),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.wap,
        bar.bar_count,
    )
