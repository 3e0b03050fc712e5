"""IB's link to TWS going down and coming back, for every client of the simulator at once.

How TWS reports it (1100, then 1101 or 1102) and what happens to the answers meanwhile:
docs/simulator.md#connectivity-outages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tws_simulator import ib_errors
from tws_simulator.ib_errors import IbError

#: Sends one notice to every connected client.
Notify = Callable[[IbError], None]


class ConnectivityOutage:
    """Whether IB's link is down, and what waits for it to come back. Used on the server's loop only."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self.active = False
        #: The outage ends with 1101: answers that fell due during it are lost.
        self.data_lost = False
        self._waiting: list[Callable[[], None]] = []

    def begin(self, seconds: float, data_lost: bool) -> None:
        """Lose the link now (1100 to every client) and restore it ``seconds`` later."""
        if self.active:
            return
        self.active, self.data_lost = True, data_lost
        self._notify(ib_errors.connectivity_lost())
        asyncio.get_running_loop().call_later(seconds, self._end)

    def defer(self, answer: Callable[[], None]) -> None:
        """Send ``answer`` once the link is back (an outage that keeps the data)."""
        self._waiting.append(answer)

    def _end(self) -> None:
        waiting, self._waiting = self._waiting, []
        data_lost, self.active, self.data_lost = self.data_lost, False, False
        self._notify(ib_errors.connectivity_restored(data_lost))
        for answer in waiting:
            answer()
