"""Follow IB's own connectivity notices (reqId -1) on one connection while the socket stays open.

1100 (lost) holds new requests until the link is back, 1102 (restored) lets open ones go on, and
1101 (restored, data lost) sends them again. See docs/ib-behaviours.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ibkr_market_data.errors import IbErrorCode, IbkrConnectionError

if TYPE_CHECKING:
    from ibkr_market_data.ib_client import IB, Contract

T = TypeVar("T")

log = logging.getLogger(__name__)

#: reqId of a notice that belongs to no request.
NO_REQUEST: Final = -1
#: How many times one request is sent again after IB lost it (1101) before the failure is the task's.
MAX_RESUBMITS: Final = 2


class IbLink:
    """The state of IB's link as notified to one client. Lives and runs on the client's event loop."""

    def __init__(self, ib: IB, pause_limit: float) -> None:
        self._pause_limit = pause_limit
        self._up = asyncio.Event()
        self._up.set()
        self._data_lost: asyncio.Future[str] = asyncio.get_event_loop().create_future()
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

    async def send(self, request: Callable[[], Awaitable[T]], what: str) -> T:
        """Return the answer of ``request()``, sent once the link is up and again if IB loses it (1101)."""
        for _ in range(MAX_RESUBMITS + 1):
            await self._wait_until_up(what)
            lost = self._data_lost
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
                return answer.result()
            answer.cancel()  # IB forgot it; the client's future for it is dropped with the task
            log.warning("Sending %s again: IB lost it in a connectivity outage (1101)", what)
        raise IbkrConnectionError(
            f"IB lost {what} in {MAX_RESUBMITS + 1} connectivity outages in a row",
            IbErrorCode.CONNECTIVITY_RESTORED_DATA_LOST,
        )

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
