"""Serve the collector's shipped universe from the TWS simulator: the collector's local IB.

The simulator and the collector know nothing of each other; this module joins them for the local
stack, the tests and the benchmarks (``IBKR_SYNTHETIC_SYMBOLS=N`` adds N made-up listings).
See docs/development.md#the-local-commands.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ibkr_market_data.bars import Bar
from ibkr_market_data.universe import UNIVERSE_FILES, UniverseSymbol, load_universe
from tws_simulator.config import SimulatorConfig
from tws_simulator.market import SimBar
from tws_simulator.universe import MAX_SYNTHETIC_LISTINGS, Listing, read_listings, synthetic_listings

SYNTHETIC_SYMBOLS_VARIABLE = "IBKR_SYNTHETIC_SYMBOLS"
#: Synthetic symbols collect after every shipped one.
SYNTHETIC_PRIORITY = 9


def shipped_universe_files() -> list[Path]:
    """Return the collector's universe CSV files, which the simulator reads as its market."""
    package = resources.files("ibkr_market_data.universe")
    return [Path(str(package.joinpath(name))) for name in UNIVERSE_FILES]


@cache
def shipped_listings() -> tuple[Listing, ...]:
    """Return the listings of the shipped universe files."""
    return read_listings(shipped_universe_files())


def synthetic_count(environ: Mapping[str, str] = os.environ) -> int:
    """Return how many synthetic symbols ``IBKR_SYNTHETIC_SYMBOLS`` asks for (0 when unset).

    :raises ValueError: naming the variable when it is not a count in range.
    """
    text = environ.get(SYNTHETIC_SYMBOLS_VARIABLE, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_SYNTHETIC_LISTINGS:
        raise ValueError(
            f"{SYNTHETIC_SYMBOLS_VARIABLE} is {text!r}; "
            f"give a count of symbols from 0 to {MAX_SYNTHETIC_LISTINGS}"
        )
    return int(text)


def local_listings(environ: Mapping[str, str] = os.environ) -> tuple[Listing, ...]:
    """Return what the local simulator serves: the shipped universe and the synthetic symbols asked for."""
    return shipped_listings() + synthetic_listings(synthetic_count(environ))


def local_universe(environ: Mapping[str, str] = os.environ) -> list[UniverseSymbol]:
    """Return what the local commands load: the shipped universe and the synthetic symbols asked for."""
    return load_universe() + [
        UniverseSymbol(
            symbol=listing.symbol,
            sec_type=listing.sec_type,
            exchange=listing.exchange,
            primary_exchange=listing.primary_exchange,
            currency=listing.currency,
            con_id=listing.con_id,
            priority=SYNTHETIC_PRIORITY,
            asset_class=listing.asset_class,
            name=listing.name,
            source_list="synthetic",
        )
        for listing in synthetic_listings(synthetic_count(environ))
    ]


#: What ``make sim`` reads, and the simulator the local commands start reads too.
SIMULATOR_VARIABLES = ("IBKR_SIM_FAULTS", "IBKR_SIM_NOW", "IBKR_SIM_SEED")


def simulator_settings(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Return ``SimulatorConfig`` settings from ``IBKR_SIM_FAULTS``, ``IBKR_SIM_NOW`` and ``IBKR_SIM_SEED``.

    They mean what they mean for ``make sim`` (docs/ib-behaviours.md#setting-them).

    :raises ValueError: a variable is bad; the message names it and the bad value.
    """
    from tws_simulator.__main__ import check_faults_against, parse_faults
    from tws_simulator.testing import fixed_clock

    settings: dict[str, Any] = {}
    faults = parse_faults(environ.get("IBKR_SIM_FAULTS", ""))
    if faults:
        check_faults_against(faults, local_listings(environ))
        settings["faults"] = faults
    now = environ.get("IBKR_SIM_NOW", "").strip()
    if now:
        try:
            moment = dt.datetime.fromisoformat(now)
        except ValueError:
            raise ValueError(f"IBKR_SIM_NOW is {now!r}, not an ISO 8601 time") from None
        settings["clock"] = fixed_clock(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))
    seed = environ.get("IBKR_SIM_SEED", "").strip()
    if seed:
        try:
            settings["seed"] = int(seed)
        except ValueError:
            raise ValueError(f"IBKR_SIM_SEED is {seed!r}, not a whole number") from None
    return settings


def simulator_config(**overrides: Any) -> SimulatorConfig:
    """Return a ``SimulatorConfig`` serving :func:`local_listings`, with ``overrides`` applied."""
    settings: dict[str, Any] = {"universe": local_listings(), **overrides}
    return SimulatorConfig(**settings)


def stored_bar(bar: SimBar) -> Bar:
    """Return the ``Bar`` the collector stores for a simulated bar (tests and benchmarks use it).

    A daily bar is dated at midnight of its session, an intraday bar by its start in UTC (naive).
    """
    if isinstance(bar.date, dt.datetime):
        timestamp = bar.date.astimezone(dt.UTC).replace(tzinfo=None)
    else:
        timestamp = dt.datetime.combine(bar.date, dt.time())
    return Bar(
        timestamp,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.wap,
        bar.bar_count,
    )
