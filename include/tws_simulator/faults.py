"""Faults injected on demand, per symbol or for every symbol, changeable while the server runs.

Each fault, what it sends and how a count limits it: docs/simulator.md#faults.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any

ALL_SYMBOLS = "*"

SWITCHES = (
    "no_permission",
    "unknown_contract",
    "ambiguous",
    "no_data",
    "pacing_violation",
    "open_requests_refused",
    "drop_connection",
    "never_answer",
    "corrupt_bars",
    "corrupt_first_bar",
    "spike",
    "stale_price",
    "volume_units",
    "intraday_mismatch",
    "connectivity_lost",
    "connectivity_lost_data_lost",
    "farm_notices",
)
NUMBERS = ("latency_ms", "jitter_ms", "outage_ms")
#: How long a connectivity outage lasts when ``outage_ms`` is not set.
DEFAULT_OUTAGE_MS = 2000


class UnknownFault(ValueError):
    """A fault name that does not exist; the message lists the known ones."""


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``settings`` against the known faults and return them.

    :raises UnknownFault: naming the first setting that is unknown or has a bad value.
    """
    checked: dict[str, Any] = {}
    for name, value in settings.items():
        if name in SWITCHES:
            if not isinstance(value, bool | int) or value < 0:
                raise UnknownFault(f"Fault {name} takes true/false or a count >= 0, not {value!r}")
        elif name in NUMBERS:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UnknownFault(f"Fault {name} takes milliseconds >= 0, not {value!r}")
        else:
            raise UnknownFault(f"Unknown fault {name!r}; known: {', '.join(SWITCHES + NUMBERS)}")
        checked[name] = value
    return checked


class FaultPlan:
    """The faults in force, keyed by symbol (``"*"`` for all)."""

    def __init__(self, initial: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Any]] = {}
        self._random = random.Random(seed)
        for symbol, settings in (initial or {}).items():
            self.set(symbol, **settings)

    @staticmethod
    def _key(symbol: str | None) -> str:
        return ALL_SYMBOLS if symbol is None else symbol

    def set(self, symbol: str | None = None, **settings: Any) -> None:
        """Add or change faults for ``symbol`` (None or ``"*"``: every symbol)."""
        checked = validate_settings(settings)
        with self._lock:
            self._faults.setdefault(self._key(symbol), {}).update(checked)

    def clear(self, symbol: str | None = None, *names: str) -> None:
        """Remove the named faults of ``symbol``, or all of its faults if no name is given."""
        with self._lock:
            current = self._faults.get(self._key(symbol), {})
            if names:
                for name in names:
                    current.pop(name, None)
            else:
                current.clear()

    def clear_all(self) -> None:
        """Remove every fault of every symbol."""
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Return a copy of every fault in force, for logs and reports."""
        with self._lock:
            return {symbol: dict(settings) for symbol, settings in self._faults.items() if settings}

    def _lookup(self, symbol: str, name: str) -> tuple[str | None, Any]:
        for key in (symbol, ALL_SYMBOLS):
            settings = self._faults.get(key)
            if settings and name in settings:
                return key, settings[name]
        return None, None

    def fires(self, symbol: str, name: str) -> bool:
        """Return whether switch ``name`` applies to this request of ``symbol``; consume one of a count."""
        with self._lock:
            key, value = self._lookup(symbol, name)
            if key is None or value is False or value == 0:
                return False
            if value is True:
                return True
            self._faults[key][name] = value - 1
            return True

    def outage_seconds(self, symbol: str) -> float:
        """Return how long, in seconds, a connectivity outage started by a request of ``symbol`` lasts."""
        with self._lock:
            value = self._lookup(symbol, "outage_ms")[1]
        return (DEFAULT_OUTAGE_MS if value is None else value) / 1000.0

    def latency_seconds(self, symbol: str) -> float:
        """Return the delay before answering a request of ``symbol``: fixed latency plus seeded jitter."""
        with self._lock:
            latency = self._lookup(symbol, "latency_ms")[1] or 0
            jitter = self._lookup(symbol, "jitter_ms")[1] or 0
            return (latency + (self._random.uniform(0, jitter) if jitter else 0)) / 1000.0
