"""How a simulator listens, what it serves and which IB limits it enforces.

The limits and their defaults: docs/simulator.md#ibs-rules.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tws_simulator.rules import PacingLimits
from tws_simulator.universe import Listing


def utc_now() -> dt.datetime:
    """Return the real time, aware, in UTC: the market clock unless a test fixes it."""
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
    #: What the market lists (:func:`tws_simulator.universe.read_listings` reads it from CSV files).
    universe: Sequence[Listing] = ()

    def __post_init__(self) -> None:
        if not self.universe:
            raise ValueError(
                "SimulatorConfig needs a universe: universe=read_listings([...csv files]) "
                "(python -m tws_simulator --universe FILE)"
            )

    def pacing_limits(self) -> PacingLimits:
        """Return the IB limits this configuration sets, for :class:`~tws_simulator.rules.IbRules`."""
        return PacingLimits(
            max_open_requests=self.max_open_requests,
            small_bar_max_seconds=self.small_bar_max_seconds,
            small_bar_window_seconds=self.small_bar_window_seconds,
            small_bar_window_limit=self.small_bar_window_limit,
            identical_request_seconds=self.identical_request_seconds,
            per_contract_window_seconds=self.per_contract_window_seconds,
            per_contract_limit=self.per_contract_limit,
        )
