"""Faults injected on demand, per symbol or for every symbol, changeable while the server runs.

``faults.set("AAPL", no_permission=True)`` affects AAPL; ``faults.set(None, latency_ms=200)`` (or
the key ``"*"``) every symbol. A symbol's own setting wins over the all-symbols one, field by field.
Methods are thread-safe: a test thread flips a fault while the server's loop reads it.

Switches (``True`` = every matching request, an int N = the next N matching requests, then off):

``no_permission``     historical / head timestamp: 354 "Requested market data is not subscribed."
``unknown_contract``  every request for the symbol: 200 "No security definition ..."
``ambiguous``         200 "... is ambiguous." unless the request gives primaryExchange or conId
``no_data``           historical / head timestamp: 162 "HMDS query returned no data"
``pacing_violation``  historical / head timestamp: 162 pacing violation (not the client's fault,
                      so not a :class:`~tws_simulator.rules.Violation`)
``open_requests_refused``  historical: 322 "Only 50 simultaneous API historical data requests
                      allowed" although the client is under the cap (IB counts its own way; not a
                      :class:`~tws_simulator.rules.Violation`)
``drop_connection``   the server closes the client's socket instead of answering
``never_answer``      the request is never answered; it stays open (counts toward the 50)
``corrupt_bars``      bars arrive with high < low and a negative volume
``corrupt_first_bar`` only the answer's first (oldest) bar arrives so broken
``spike``             valid bars, wrong data: the newest bar closes at 3 times its price
``stale_price``       every bar after the answer's oldest repeats its price, with no volume
``volume_units``      the newest bar's volume is 100 times too large
``intraday_mismatch`` intraday bars of 1 minute and longer disagree with the daily bar, each still
                      valid: every bar starting in regular hours has half its volume, and in each
                      session the highest one reaches 5% above the daily high; daily requests
                      neither see it nor use up a count
``connectivity_lost``  IB's link to TWS goes down: every client gets 1100, answers wait
                      ``outage_ms`` (default 2,000), then 1102 "data maintained" and they arrive
``connectivity_lost_data_lost``  the same, but it ends with 1101 "data lost": every request open
                      across the outage is forgotten, never answered (the client resubmits)
``farm_notices``      the client gets IB Gateway's data-farm flap (2103/2105/2157 broken, then
                      2104/2106/2158 OK, 2107 idle) before its answer, which arrives as usual

Numbers: ``latency_ms`` (fixed delay before every answer), ``jitter_ms`` (plus a uniform
random 0..jitter, seeded) and ``outage_ms`` (how long a connectivity outage lasts).
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
    """``settings`` checked against the known faults; raises :class:`UnknownFault` naming the bad one."""
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
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of every fault in force, for logs and reports."""
        with self._lock:
            return {symbol: dict(settings) for symbol, settings in self._faults.items() if settings}

    def _lookup(self, symbol: str, name: str) -> tuple[str | None, Any]:
        for key in (symbol, ALL_SYMBOLS):
            settings = self._faults.get(key)
            if settings and name in settings:
                return key, settings[name]
        return None, None

    def fires(self, symbol: str, name: str) -> bool:
        """Whether switch ``name`` applies to this request of ``symbol``; consumes one of a count."""
        with self._lock:
            key, value = self._lookup(symbol, name)
            if key is None or value is False or value == 0:
                return False
            if value is True:
                return True
            self._faults[key][name] = value - 1
            return True

    def outage_seconds(self, symbol: str) -> float:
        """How long a connectivity outage started by a request of ``symbol`` lasts."""
        with self._lock:
            value = self._lookup(symbol, "outage_ms")[1]
        return (DEFAULT_OUTAGE_MS if value is None else value) / 1000.0

    def latency_seconds(self, symbol: str) -> float:
        """The delay before answering a request of ``symbol``: fixed latency plus seeded jitter."""
        with self._lock:
            latency = self._lookup(symbol, "latency_ms")[1] or 0
            jitter = self._lookup(symbol, "jitter_ms")[1] or 0
            return (latency + (self._random.uniform(0, jitter) if jitter else 0)) / 1000.0
