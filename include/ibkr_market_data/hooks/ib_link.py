"""Follow IB's own connectivity and HMDS farm notices (reqId -1) on one connection.

1100 (lost) holds new requests until the link is back, 1102 (restored) lets open ones go on, and
1101 (restored, data lost) sends them again; a request the HMDS farm's outage (2105) failed or timed
out is sent again after 2106. See docs/daily-dag.md#ib-connectivity-notices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ibkr_market_data.errors import IbErrorCode, IbkrConnectionError, IbkrTimeoutError

if TYPE_CHECKING:
    from ibkr_market_data.ib_client import IB, Contract

T = TypeVar("T")

log = logging.getLogger(__name__)

#: reqId of a notice that belongs to no request.
NO_REQUEST: Final = -1
#: How many times one request is sent again after IB lost it (1101) or the HMDS farm's outage failed
#: it, before the failure is the task's.
MAX_RESUBMITS: Final = 2
#: The text of IB's 162 for a historical request that fell due while the HMDS farm was down.
FARM_BROKEN_TEXT: Final = "data farm connection is broken"


class IbLink:
    """The state of IB's link as notified to one client. Lives and runs on the client's event loop."""

    def __init__(self, ib: IB, pause_limit: float) -> None:
        self._pause_limit = pause_limit
        self._up = asyncio.Event()
        self._up.set()
        self._data_lost: asyncio.Future[str] = asyncio.get_event_loop().create_future()
        self._hmds_up = asyncio.Event()
        self._hmds_up.set()
        self._hmds_breaks = 0  # 2105s seen: a request that lived through one may have timed out for it
        ib.errorEvent += self._on_notice

    @property
    def up(self) -> bool:
        """Return whether IB's link is up, as last notified."""
        return self._up.is_set()

    def _on_notice(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        if req_id != NO_REQUEST:
            return
        if code == IbErrorCode.CONNECTIVITY_LOST:
            log.warning("IB reports its connectivity lost (1100): new requests wait for it")
            self._up.clear()
        elif code == IbErrorCode.CONNECTIVITY_RESTORED:
            log.info("IB reports connectivity restored with data kept (1102): open requests go on")
            self._up.set()
        elif code == IbErrorCode.CONNECTIVITY_RESTORED_DATA_LOST:
            log.warning("IB reports connectivity restored but data lost (1101): open requests are sent again")
            lost, self._data_lost = self._data_lost, asyncio.get_event_loop().create_future()
            lost.set_result(message)
            self._up.set()
        elif code == IbErrorCode.HISTORICAL_DATA_FARM_BROKEN:
            log.warning("IB reports its historical data farm broken (2105): historical answers wait for 2106")
            self._hmds_breaks += 1
            self._hmds_up.clear()
        elif code == IbErrorCode.HISTORICAL_DATA_FARM_OK and not self._hmds_up.is_set():
            log.info("IB reports its historical data farm OK again (2106)")
            self._hmds_up.set()

    async def send(self, request: Callable[[], Awaitable[T]], what: str) -> T:
        """Return the answer of ``request()``, sent once the link is up.

        It is sent again if IB loses it (1101), or if the HMDS farm's outage failed it (162 "... data
        farm connection is broken") or outlasted its timeout: then once the farm is back (2106).
        """
        for resubmits in range(MAX_RESUBMITS + 1):
            await self._wait_until_up(what)
            lost = self._data_lost
            breaks = self._hmds_breaks
            answer = asyncio.ensure_future(request())
            answer.add_done_callback(mark_retrieved)
            either: set[asyncio.Future[Any]] = {answer, lost}
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # As asyncio.wait_for does: a request that already failed reports its own failure.
                if answer.done():
                    return answer.result()
                answer.cancel()
                raise
            if answer.done():
                if resubmits == MAX_RESUBMITS or not self._failed_by_farm_outage(answer, breaks):
                    return answer.result()
                log.warning(
                    "Sending %s again once IB's historical data farm is back (2106): %s",
                    what,
                    answer.exception(),
                )
                await self._wait_for_hmds(answer)
                continue
            answer.cancel()  # IB forgot it; the client's future for it is dropped with the task
            log.warning("Sending %s again: IB lost it in a connectivity outage (1101)", what)
        raise IbkrConnectionError(
            f"IB lost {what} in {MAX_RESUBMITS + 1} connectivity outages in a row",
            IbErrorCode.CONNECTIVITY_RESTORED_DATA_LOST,
        )

    def _failed_by_farm_outage(self, answer: asyncio.Future[Any], breaks: int) -> bool:
        """Check whether ``answer`` failed for the HMDS farm's outage rather than for the request itself."""
        from ibkr_market_data.ib_client import RequestError

        if answer.cancelled():
            return False
        error = answer.exception()
        if isinstance(error, RequestError):
            service_error = error.code == IbErrorCode.HISTORICAL_DATA_SERVICE_ERROR
            return service_error and FARM_BROKEN_TEXT in error.message
        farm_was_down = not self._hmds_up.is_set() or self._hmds_breaks != breaks
        return isinstance(error, IbkrTimeoutError) and farm_was_down

    async def _wait_for_hmds(self, answer: asyncio.Future[Any]) -> None:
        """Wait for 2106, at most the pause limit; past it, raise ``answer``'s own failure."""
        if self._hmds_up.is_set():
            return
        try:
            await asyncio.wait_for(self._hmds_up.wait(), self._pause_limit)
        except TimeoutError:
            answer.result()  # raises the failure the outage caused, retryable

    async def _wait_until_up(self, what: str) -> None:
        if self._up.is_set():
            return
        try:
            await asyncio.wait_for(self._up.wait(), self._pause_limit)
        except TimeoutError as exc:
            raise IbkrConnectionError(
                f"IB's connectivity was lost (1100) and not restored within {self._pause_limit:g} s; "
                f"{what} was not sent",
                IbErrorCode.CONNECTIVITY_LOST,
            ) from exc


def mark_retrieved(future: asyncio.Future[Any]) -> None:
    """Read ``future``'s exception, so that one nobody awaits any more is not logged at exit.

    A request can fail after its waiter gave up on it (cancelled, or resubmitted after 1101); asyncio
    would log "Task exception was never retrieved" for it at garbage collection.
    """
    if not future.cancelled():
        future.exception()
