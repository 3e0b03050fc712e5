"""Outages every client of the simulator sees at once: IB's link to TWS, and the HMDS data farm.

How TWS reports them (1100, then 1101 or 1102; 2105 and 2106 for the historical farm) and what
happens to the answers meanwhile: docs/simulator.md#connectivity-outages, docs/ib-behaviours.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tws_simulator import ib_errors
from tws_simulator.ib_errors import IbError

#: Sends one notice to every connected client.
Notify = Callable[[IbError], None]


class _Outage:
    """Whether something IB needs is down, and the answers waiting for it. Used on the server's loop only."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self.active = False
        self._waiting: list[Callable[[], None]] = []

    def _begin(self, seconds: float, notice: IbError) -> None:
        self.active = True
        self._notify(notice)
        asyncio.get_running_loop().call_later(seconds, self._end)

    def defer(self, answer: Callable[[], None]) -> None:
        """Send ``answer`` once the outage is over."""
        self._waiting.append(answer)

    def _restored_notice(self) -> IbError:
        raise NotImplementedError

    def _end(self) -> None:
        notice = self._restored_notice()
        waiting, self._waiting = self._waiting, []
        self.active = False
        self._notify(notice)
        for answer in waiting:
            answer()


class ConnectivityOutage(_Outage):
    """IB's link to TWS: down with 1100, back with 1102, or with 1101 when open requests were lost."""

    def __init__(self, notify: Notify) -> None:
        super().__init__(notify)
        #: The outage ends with 1101: answers that fell due during it are lost.
        self.data_lost = False

    def begin(self, seconds: float, data_lost: bool) -> None:
        """Lose the link now (1100 to every client) and restore it ``seconds`` later."""
        if self.active:
            return
        self.data_lost = data_lost
        self._begin(seconds, ib_errors.connectivity_lost())

    def _restored_notice(self) -> IbError:
        data_lost, self.data_lost = self.data_lost, False
        return ib_errors.connectivity_restored(data_lost)


class HmdsOutage(_Outage):
    """The historical data farm: broken with 2105, OK again with 2106."""

    def __init__(self, notify: Notify) -> None:
        super().__init__(notify)
        #: Historical requests falling due during the outage fail (162) instead of waiting for it.
        self.failing = False

    def begin(self, seconds: float, failing: bool) -> None:
        """Break the farm now (2105 to every client) and restore it ``seconds`` later (2106)."""
        if self.active:
            return
        self.failing = failing
        self._begin(seconds, ib_errors.HMDS_FARM_BROKEN)

    def _restored_notice(self) -> IbError:
        self.failing = False
        return ib_errors.HMDS_FARM_OK
