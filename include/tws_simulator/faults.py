"""Faults and market properties injected on demand, per symbol or for every symbol, changeable live.

Each fault, what it sends and how a count limits it: docs/simulator.md#faults; the IB behaviour
each setting models: docs/ib-behaviours.md. Methods are thread-safe: a test thread flips a fault
while the server's loop reads it.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import threading
from collections.abc import Mapping
from typing import Any

from tws_simulator import properties
from tws_simulator.properties import NO_PROPERTIES, MarketProperties

ALL_SYMBOLS = "*"

#: Switches: ``True`` = every matching request, an int N = the next N matching requests, then off.
SWITCH_DESCRIPTIONS: dict[str, str] = {
    "no_permission": 'historical / head timestamp: 354 "Requested market data is not subscribed."',
    "unknown_contract": 'every request for the symbol: 200 "No security definition ..."',
    "ambiguous": '200 "... is ambiguous." unless the request gives primaryExchange or conId',
    "no_data": 'historical / head timestamp: 162 "HMDS query returned no data"',
    "pacing_violation": "historical / head timestamp: 162 pacing violation (not the client's fault)",
    "open_requests_refused": "historical: 322 although the client is under the cap (IB counts its own way)",
    "drop_connection": "the server closes the client's socket instead of answering",
    "never_answer": "the request is never answered; it stays open (counts toward the 50)",
    "corrupt_bars": "bars arrive with high < low and a negative volume",
    "corrupt_first_bar": "only the answer's first (oldest) bar arrives so broken",
    "spike": "valid bars, wrong data: the newest bar closes at 3 times its price",
    "stale_price": "every bar after the answer's oldest repeats its price, with no volume",
    "volume_units": "the newest bar's volume is 100 times too large",
    "intraday_mismatch": "intraday bars of 1 minute and longer disagree with the daily bar, each valid",
    "coarse_bars_disagree": "bars of 5 minutes and longer carry 1% less volume than their minutes",
    "connectivity_lost": "every client gets 1100, answers wait outage_ms, then 1102 and they arrive",
    "connectivity_lost_data_lost": "the same, ending with 1101: requests open across the outage are lost",
    "farm_notices": "a data-farm flap (2103/2105/2157, 2104/2106/2158, 2107) before the answer",
    "hmds_farm_stall": "the HMDS farm breaks (2105 to all): historical answers wait outage_ms for 2106",
    "hmds_farm_fail": 'the HMDS farm breaks for outage_ms: historical requests get 162 "... is broken"',
    "bars_out_of_order": "the answer's bars arrive shuffled (seeded), never in date order",
    "duplicate_bar": "one bar of the answer (seeded) arrives twice, one after the other",
    "split_answer": "the newest bar arrives after the end of the answer, as an update (message 90)",
    "naive_bar_times": "intraday times arrive as 'yyyyMMdd  HH:mm:ss' in the login time zone, unnamed",
    "connect_notices": 'every client gets 2104/2106/2158 "... connection is OK" at connect ("*" only)',
}
#: Numbers (milliseconds >= 0).
NUMBER_DESCRIPTIONS: dict[str, str] = {
    "latency_ms": "fixed delay before every answer",
    "jitter_ms": "plus a uniform random 0..jitter (seeded)",
    "outage_ms": "how long a connectivity or HMDS farm outage lasts (default 2,000)",
    "latency_per_open_request_ms": "plus this per historical request open on the gateway (IB's queue)",
    "account_sync_ms": "the connect-time sync (positions, account, executions) takes this long ('*' only)",
}
SWITCHES = tuple(SWITCH_DESCRIPTIONS)
NUMBERS = tuple(NUMBER_DESCRIPTIONS)
#: Market properties: steady facts about a symbol's data (:mod:`tws_simulator.properties`).
PROPERTIES = tuple(properties.PARSERS)
#: Settings of every client's connection, not of one symbol's requests: only under ``"*"``.
EVERY_CLIENT_ONLY = ("connect_notices", "account_sync_ms")
#: Settings about one listing's identity: never under ``"*"``.
ONE_SYMBOL_ONLY = ("delisting", "con_id_change")
#: How long a connectivity outage lasts when ``outage_ms`` is not set.
DEFAULT_OUTAGE_MS = 2000


class UnknownFault(ValueError):
    """A fault name that does not exist, or a value it does not take; the message says which."""


def validate_settings(settings: Mapping[str, Any], symbol: str | None = None) -> dict[str, Any]:
    """Return ``settings`` checked against the known faults, market properties read into their values.

    :param symbol: the symbol they are for (None or ``"*"``: every symbol), for the settings that
        belong to one scope only.
    :raises UnknownFault: naming the bad setting and what it takes.
    """
    key = ALL_SYMBOLS if symbol is None else symbol
    checked: dict[str, Any] = {}
    for name, value in settings.items():
        if name in SWITCHES:
            if not isinstance(value, bool | int) or value < 0:
                raise UnknownFault(f"Fault {name} takes true/false or a count >= 0, not {value!r}")
        elif name in NUMBERS:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UnknownFault(f"Fault {name} takes milliseconds >= 0, not {value!r}")
        elif name in PROPERTIES:
            try:
                value = properties.parse(name, value)
            except properties.BadPropertyValue as exc:
                raise UnknownFault(f"Fault {exc}") from None
        else:
            known = ", ".join(SWITCHES + NUMBERS + PROPERTIES)
            raise UnknownFault(f"Unknown fault {name!r}; known: {known}")
        if name in EVERY_CLIENT_ONLY and key != ALL_SYMBOLS:
            raise UnknownFault(f'Fault {name} applies to every client: set it under "*", not {key!r}')
        if name in ONE_SYMBOL_ONLY and key == ALL_SYMBOLS:
            raise UnknownFault(f'Fault {name} is about one listing: set it for a symbol, not "*"')
        checked[name] = value
    return checked


class FaultPlan:
    """The faults in force, keyed by symbol (``"*"`` for all)."""

    def __init__(self, initial: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Any]] = {}
        #: Market properties as given (JSON values), for snapshots that read like the settings.
        self._given: dict[str, dict[str, Any]] = {}
        self._random = random.Random(seed)
        #: How often each switch fired, by name: evidence that an injected fault took effect.
        self._fired: collections.Counter[str] = collections.Counter()
        for symbol, settings in (initial or {}).items():
            self.set(symbol, **settings)

    @staticmethod
    def _key(symbol: str | None) -> str:
        return ALL_SYMBOLS if symbol is None else symbol

    def set(self, symbol: str | None = None, **settings: Any) -> None:
        """Add or change faults for ``symbol`` (None or ``"*"``: every symbol)."""
        checked = validate_settings(settings, symbol)
        given = {name: value for name, value in settings.items() if name in PROPERTIES}
        with self._lock:
            self._faults.setdefault(self._key(symbol), {}).update(checked)
            self._given.setdefault(self._key(symbol), {}).update(given)

    def clear(self, symbol: str | None = None, *names: str) -> None:
        """Remove the named faults of ``symbol``, or all of its faults if no name is given."""
        with self._lock:
            for table in (self._faults, self._given):
                current = table.get(self._key(symbol), {})
                if names:
                    for name in names:
                        current.pop(name, None)
                else:
                    current.clear()

    def clear_all(self) -> None:
        """Remove every fault of every symbol."""
        with self._lock:
            self._faults.clear()
            self._given.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Return a copy of every fault in force (market properties as given), for logs and reports."""
        with self._lock:
            return {
                symbol: {**settings, **self._given.get(symbol, {})}
                for symbol, settings in self._faults.items()
                if settings
            }

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
            self._fired[name] += 1
            if value is True:
                return True
            self._faults[key][name] = value - 1
            return True

    def fired(self) -> dict[str, int]:
        """Return how many times each switch fired since the plan was made or :meth:`reset_fired`."""
        with self._lock:
            return dict(self._fired)

    def reset_fired(self) -> None:
        """Start counting the switches that fire from zero."""
        with self._lock:
            self._fired.clear()

    def number(self, symbol: str, name: str) -> float:
        """Return number ``name`` (milliseconds) for ``symbol``, 0 when unset."""
        with self._lock:
            return self._lookup(symbol, name)[1] or 0

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

    def properties(self, symbol: str) -> MarketProperties:
        """Return the market properties of ``symbol``: its own settings over those for every symbol."""
        with self._lock:
            found = {}
            for name in PROPERTIES:
                value = self._lookup(symbol, name)[1]
                if value is not None:
                    found[properties.PARSERS[name][1]] = value
        return dataclasses.replace(NO_PROPERTIES, **found) if found else NO_PROPERTIES

    def symbols_with(self, name: str) -> dict[str, Any]:
        """Return each symbol's own value of setting ``name`` (the ``"*"`` one left out)."""
        with self._lock:
            return {
                symbol: settings[name]
                for symbol, settings in self._faults.items()
                if symbol != ALL_SYMBOLS and name in settings
            }
