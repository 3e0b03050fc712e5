"""Airflow hook for Interactive Brokers' TWS / IB Gateway socket API.

Every request has one implementation, a coroutine; a blocking method runs it in the client's event
loop. See docs/configuration.md for the connection and docs/architecture.md for the request path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import TYPE_CHECKING, Final, TypeVar

from airflow.sdk import BaseHook

from ibkr_market_data.bars import DAILY_BAR_SIZE, SMALL_BAR_SIZES, Bar, bars_from_ib
from ibkr_market_data.client_ids import ClientIdLease, LocalClientIdLease
from ibkr_market_data.contracts import ContractSpec, ResolvedContract
from ibkr_market_data.errors import (
    ClientIdsExhaustedError,
    IbErrorCode,
    IbkrAmbiguousContractError,
    IbkrClientIdInUseError,
    IbkrConnectionError,
    IbkrError,
    IbkrNoDataError,
    IbkrTimeoutError,
    IbkrUnknownContractError,
    classify_error,
)
from ibkr_market_data.hooks.ib_link import IbLink, mark_retrieved
from ibkr_market_data.hooks.ibkr_config import IbkrConnectionConfig, MarketDataType

if TYPE_CHECKING:
    from ibkr_market_data.ib_client import IB, BarData, Contract

T = TypeVar("T")

#: Waits for the right to send a small-bar request: ``pacer(contract_key, request_key)``.
Pacer = Callable[[str, str], None]

#: Makes the client-id lease once the connection is read: ``lease(first_client_id, client_id_range)``.
ClientIdLeaseFactory = Callable[[int, int], ClientIdLease]

#: ``formatDate`` asking for dates and times in the exchange's zone (daily bars are then session dates).
FORMAT_DATE_EXCHANGE_LOCAL: Final = 1
#: ``whatToShow`` of daily bars adjusted for splits and dividends; IB allows no end date with it.
ADJUSTED_LAST: Final = "ADJUSTED_LAST"
#: ``formatDate`` asking for epoch seconds, which the client turns into aware UTC datetimes.
FORMAT_DATE_EPOCH_UTC: Final = 2


def _ib_end(end: dt.datetime | str) -> str:
    """Return IB's end string: an aware datetime in UTC (``20250115-21:00:00``), or an IB string as given."""
    if isinstance(end, dt.datetime):
        if end.tzinfo is None:
            raise ValueError("fetch_bars needs an aware end datetime")
        return end.astimezone(dt.UTC).strftime("%Y%m%d-%H:%M:%S")
    return end


def _ensure_event_loop() -> None:
    """Give the calling thread an event loop: the IB client (even its import) needs one."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


class IbkrHook(BaseHook):
    """
    Talks to TWS or IB Gateway through the TWS socket API (``ib_insync``).

    Connection fields: ``host`` (default ``127.0.0.1``) and ``port`` (default ``4002``, IB Gateway
    paper; 4001 live, TWS 7497 paper / 7496 live). IB Gateway has no API password: it trusts the
    socket, so bind it to loopback or a private network. Extras, all optional; a missing extra,
    ``null`` or ``""`` means the default, and a bad value fails with ``IbkrConfigError`` naming it
    before anything connects. The defaults below are ``IbkrConnectionConfig``'s (a test holds them
    equal):

    * ``client_id`` (int, default 1): first API client id this hook may use.
    * ``client_id_range`` (int 1-32, default 32): how many ids from ``client_id`` it may lease; each
      live connection leases one, so this bounds concurrent connections (TWS allows 32 clients).
    * ``readonly`` (bool, default true): read-only; the hook places no orders and synchronises none.
      Accepts true/false, 1/0, yes/no, on/off; anything else is refused.
    * ``account`` (str, default empty): unused: the hook synchronises no account at connect.
    * ``market_data_type`` (int 1-4, default 1): 1 live, 2 frozen, 3 delayed, 4 delayed-frozen.
    * ``connect_timeout`` (seconds > 0, default 10): the API handshake.
    * ``request_timeout`` (seconds > 0, default 60): one historical, contract or head-timestamp
      request; on expiry the request is cancelled (where IB can) and ``IbkrTimeoutError`` raised.

    The connection is read on first use, not when the hook is made. Use the hook as a context
    manager, which always disconnects::

        with IbkrHook() as hook:
            bars = hook.fetch_bars(ContractSpec("AAPL", primary_exchange="NASDAQ"), end, "1 D", "1 day")

    :param ibkr_conn_id: the Airflow connection to use.
    :param client_id_lease: makes the client-id lease from the connection's ``client_id`` and
        ``client_id_range``; default: process-local. Tasks on several workers pass
        ``functools.partial(PostgresClientIdLease, connection)``.
    :param pacer: called before every request that IB's hard pacing limits cover (bars of 30
        seconds or less, head timestamps); it blocks until the request may be sent.
    """

    conn_name_attr = "ibkr_conn_id"
    default_conn_name = "ibkr_default"
    conn_type = "ibkr"
    hook_name = "Interactive Brokers (TWS / IB Gateway)"

    def __init__(
        self,
        ibkr_conn_id: str = default_conn_name,
        client_id_lease: ClientIdLeaseFactory = LocalClientIdLease,
        pacer: Pacer | None = None,
    ) -> None:
        super().__init__()
        self.ibkr_conn_id = ibkr_conn_id
        self.pacer = pacer
        self.client_id: int | None = None
        self.requests_sent = 0
        self._make_lease = client_id_lease
        self._lease: ClientIdLease | None = None
        self._ib: IB | None = None
        self._link: IbLink | None = None
        self._concurrent = False  # True while run_async runs several requests on the connection

    @cached_property
    def config(self) -> IbkrConnectionConfig:
        """Return the connection, read and checked on first use.

        :raises IbkrConfigError: an extra does not parse or is out of range.
        """
        conn = self.get_connection(self.ibkr_conn_id)
        extras = conn.extra_dejson
        config = IbkrConnectionConfig.from_connection(conn)
        ignored = IbkrConnectionConfig.unknown_extras(extras)
        if ignored:
            self.log.warning(
                "Connection %s: ignoring unknown extras %s; known: %s",
                self.ibkr_conn_id,
                ", ".join(ignored),
                ", ".join(IbkrConnectionConfig.extra_names()),
            )
        return config

    def _client_id_lease(self) -> ClientIdLease:
        if self._lease is None:
            self._lease = self._make_lease(self.config.client_id, self.config.client_id_range)
        return self._lease

    # -- running coroutines ---------------------------------------------------------------------

    def _run(self, work: Awaitable[T]) -> T:
        """Run ``work`` to its end in the client's event loop (ib_async's ``_run``).

        Not ``util.run``, which cancels all of ``work`` when the socket drops: each request fails
        with its own error instead.
        """
        _ensure_event_loop()
        from ibkr_market_data.ib_client import util

        return util.getLoop().run_until_complete(work)

    def run_async(self, work: Callable[[], Awaitable[T]], concurrent: bool = True) -> T:
        """Run ``work()`` in the client's event loop and return its result.

        :param work: makes the coroutine that awaits the hook's ``..._async`` requests.
        :param concurrent: several requests in flight on one connection: it is opened first, and
            no request reopens it (under the others' feet) or waits for the pacer (blocking them
            all). ``False``: requests go one at a time, connecting and pacing as the blocking
            methods do.
        """
        if not concurrent:
            return self._run(work())
        self.get_conn()
        self._concurrent = True
        try:
            return self._run(work())
        finally:
            self._concurrent = False

    # -- connection lifetime ------------------------------------------------------------------

    def get_conn(self) -> IB:
        """Return a connected ``IB`` client, leasing a client id; reconnect if the socket dropped.

        :raises IbkrConnectionError: TWS / IB Gateway cannot be reached.
        :raises IbkrClientIdInUseError: every client id of the range is in use.
        :raises IbkrConfigError: an extra of the connection is bad.
        """
        return self._run(self._open())

    async def _open(self) -> IB:
        """Return the connected client, connecting first when there is none or its socket dropped."""
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        self.close()
        config = self.config  # a bad extra fails here, before anything connects
        lease = self._client_id_lease()
        from ibkr_market_data.ib_client import IB

        while True:
            try:
                client_id = lease.acquire()
            except ClientIdsExhaustedError as exc:
                raise IbkrClientIdInUseError(str(exc)) from exc
            ib = IB()
            ib.RaiseRequestErrors = True
            # Listening before the handshake: IB Gateway tells a new client which farms are broken.
            link = IbLink(ib, pause_limit=config.request_timeout)
            try:
                await self._connect(ib, client_id)
            except IbkrClientIdInUseError:
                self.log.warning("Client id %s is in use by another API client; leasing another", client_id)
                continue  # the clashing id stays leased, so acquire() moves on
            except IbkrError:
                lease.release_all()
                raise
            self._ib, self.client_id, self._link = ib, client_id, link
            if config.market_data_type != MarketDataType.LIVE:
                ib.reqMarketDataType(int(config.market_data_type))
            self.log.info("Connected to IB at %s:%s as client %s", config.host, config.port, client_id)
            return ib

    async def _connect(self, ib: IB, client_id: int) -> None:
        """Connect ``ib``, failing fast on a client id in use where the client would wait out its timeout."""
        config = self.config
        clash: asyncio.Future[str] = asyncio.get_event_loop().create_future()

        def on_error(req_id: int, code: int, message: str, contract: Contract | None) -> None:
            if code == IbErrorCode.CLIENT_ID_IN_USE and not clash.done():
                clash.set_result(message)

        ib.errorEvent += on_error
        # The API handshake alone: the collector reads no positions, orders or account, so it does not
        # wait for their sync, which takes as long as IB takes (ib_async's fetchFields=NONE).
        ib.wrapper.clientId = client_id
        connect = asyncio.ensure_future(
            ib.client.connectAsync(config.host, config.port, client_id, config.connect_timeout)
        )
        try:
            await asyncio.wait({connect, clash}, return_when=asyncio.FIRST_COMPLETED)
            if clash.done():
                connect.cancel()
                ib.client.disconnect()  # IB.disconnect() refuses a socket whose API is not ready
                raise IbkrClientIdInUseError(clash.result(), IbErrorCode.CLIENT_ID_IN_USE)
            connect.result()
        except (ConnectionError, OSError, TimeoutError) as exc:
            ib.client.disconnect()
            raise IbkrConnectionError(
                f"Could not connect to TWS / IB Gateway at {config.host}:{config.port} "
                f"(client id {client_id}): {exc!r}"
            ) from exc
        finally:
            ib.errorEvent -= on_error

    def close(self) -> None:
        """Disconnect and give back the client ids; safe to call twice, and on a hook never used."""
        if self._ib is not None:
            self._ib.disconnect()
            self._ib = None
        self._link = None
        self.client_id = None
        if self._lease is not None:
            self._lease.release_all()

    def __enter__(self) -> IbkrHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Connect and ask for IB's clock, as the UI's Test button does; return success and a message."""
        what = "the server time"
        try:
            with self:
                server_time = self._run(
                    self._send(what, lambda ib: self._answer_within(ib.reqCurrentTimeAsync(), what))
                )
        except Exception as exc:
            return False, str(exc)
        return (
            True,
            f"Connected to {self.config.host}:{self.config.port}; server time {server_time.isoformat()}",
        )

    # -- requests -----------------------------------------------------------------------------

    async def _send(
        self,
        what: str,
        request: Callable[[IB], Awaitable[T]],
        turn: tuple[str, str] | None = None,
    ) -> T:
        """Send one request and return its answer, each failure raised as its IbkrError class.

        :param what: names the request in errors and logs.
        :param request: sends the request on the client it is given and returns its answer.
        :param turn: ``(contract_key, request_key)`` of a request IB paces: it waits for the pacer.
        """
        from ibkr_market_data.ib_client import RequestError

        if self._concurrent:
            if self._ib is None or not self._ib.isConnected():
                self.close()
                raise IbkrConnectionError(f"Not connected to IB for {what}")
        else:
            if turn is not None and self.pacer is not None:
                await self._open()  # the pacer's clock must start when the request leaves
                self.pacer(*turn)  # blocks the loop, which runs this request alone
            await self._open()
        ib, link = self._ib, self._link
        assert ib is not None and link is not None  # _open() made both
        self.requests_sent += 1
        try:
            return await link.send(lambda: request(ib), what)
        except RequestError as exc:
            raise classify_error(exc.code, exc.message) from exc
        except ConnectionError as exc:
            self.close()
            raise IbkrConnectionError(f"Connection lost during {what}: {exc}") from exc

    async def _answer_within(self, answer: Awaitable[T], what: str) -> T:
        """Return ``answer`` within the connection's request_timeout; the client would wait forever."""
        timeout = self.config.request_timeout
        request = asyncio.ensure_future(answer)
        request.add_done_callback(mark_retrieved)
        try:
            return await asyncio.wait_for(request, timeout)
        except TimeoutError as exc:
            raise IbkrTimeoutError(f"No answer within {timeout:g} s for {what}") from exc

    def resolve_contract(self, spec: ContractSpec) -> ResolvedContract:
        """Return IB's one contract for ``spec``.

        :param spec: the contract as the symbols table describes it.
        :raises IbkrUnknownContractError: IB knows no contract for ``spec``.
        :raises IbkrAmbiguousContractError: several contracts match; give the primary exchange or conId.
        :raises IbkrError: one subclass per failure class, see ``ibkr_market_data.errors``.
        """
        what = f"contract details for {spec}"
        # IB has no cancel for a contract-details request: on a timeout the answer is just ignored.
        details = self._run(
            self._send(what, lambda ib: self._answer_within(ib.reqContractDetailsAsync(spec.to_ib()), what))
        )
        if not details:
            raise IbkrUnknownContractError(
                f"No security definition has been found for {spec}", IbErrorCode.NO_SECURITY_DEFINITION
            )
        if len(details) > 1:
            raise IbkrAmbiguousContractError(
                f"{spec} matches {len(details)} contracts; give its primary exchange or conId",
                IbErrorCode.NO_SECURITY_DEFINITION,
            )
        contract = details[0].contract
        assert contract is not None  # every contract-details answer carries its contract
        return ResolvedContract(
            con_id=contract.conId,
            symbol=contract.symbol,
            primary_exchange=contract.primaryExchange or spec.primary_exchange,
            currency=contract.currency,
            time_zone=details[0].timeZoneId,
            long_name=details[0].longName,
        )

    def fetch_bars(
        self,
        spec: ContractSpec,
        end: dt.datetime | str,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = True,
    ) -> list[Bar]:
        """Return the validated bars of ``bar_size`` covering ``duration`` up to ``end``.

        Blocking: runs ``fetch_bars_async``, connecting first and waiting for the pacer as needed.

        :param spec: the contract.
        :param end: an aware datetime, or an IB end string such as ``"20250115 23:59:59 Australia/Sydney"``.
        :param duration: IB's duration string, such as ``"5 D"``.
        :param bar_size: IB's bar size, such as ``"1 day"``.
        :param what_to_show: IB's ``whatToShow``.
        :param use_rth: regular trading hours only.
        :raises IbkrNoDataError: IB has no bars there (holiday, before listing).
        :raises InvalidBarError: a bar breaks OHLC rules; nothing of the response should be stored.
        :raises IbkrError: one subclass per failure class, see ``ibkr_market_data.errors``.
        """
        return self._run(self.fetch_bars_async(spec, end, duration, bar_size, what_to_show, use_rth))

    async def fetch_bars_async(
        self,
        spec: ContractSpec,
        end: dt.datetime | str,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = True,
    ) -> list[Bar]:
        """Return the validated bars of ``bar_size`` covering ``duration`` up to ``end``; see ``fetch_bars``.

        Await it inside ``run_async``. With several requests in flight the connection must be open,
        and paced bar sizes are refused: their pacer would block the other requests.

        :raises ValueError: a paced bar size among requests in flight.
        :raises IbkrError: as ``fetch_bars``.
        """
        if self._concurrent and bar_size in SMALL_BAR_SIZES and self.pacer is not None:
            raise ValueError(f"{bar_size} bars are paced: request them with fetch_bars")
        end = _ib_end(end)
        timeout = self.config.request_timeout

        async def historical_data(ib: IB) -> list[Bar]:
            started = time.monotonic()
            ib_bars = await self._historical_request(ib, spec, end, duration, bar_size, what_to_show, use_rth)
            if ib_bars:
                return bars_from_ib(ib_bars)
            # The client's own timeout cancels the request at IB and answers with an empty list.
            if time.monotonic() - started >= timeout * 0.99:
                raise IbkrTimeoutError(
                    f"No answer within {timeout:g} s for {duration} of {bar_size} bars of {spec}"
                )
            raise IbkrNoDataError(f"IB returned no bars for {duration} of {bar_size} to {end} for {spec}")

        turn = None
        if bar_size in SMALL_BAR_SIZES:
            request_key = f"{spec}|{end}|{duration}|{bar_size}|{what_to_show}|{int(use_rth)}"
            turn = (f"{spec}|{what_to_show}", request_key)
        return await self._send(f"historical data for {spec}", historical_data, turn)

    def fetch_adjusted_daily_bars(self, spec: ContractSpec, duration: str) -> list[Bar]:
        """Return IB's split- and dividend-adjusted daily bars (``ADJUSTED_LAST``) over ``duration`` to now.

        IB refuses an end date with ADJUSTED_LAST (321), so the request never has one: it reaches
        back from now, one request per symbol. See docs/corporate-actions.md#adjusted-prices.

        :param spec: the contract.
        :param duration: IB's duration string, such as ``"2 Y"``.
        :raises IbkrNoDataError: IB has no bars in the window.
        :raises IbkrError: one subclass per failure class, see ``ibkr_market_data.errors``.
        """
        return self.fetch_bars(spec, "", duration, DAILY_BAR_SIZE, what_to_show=ADJUSTED_LAST)

    def _historical_request(
        self,
        ib: IB,
        spec: ContractSpec,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
    ) -> Awaitable[list[BarData]]:
        return ib.reqHistoricalDataAsync(
            spec.to_ib(),
            endDateTime=end,
            durationStr=duration,
            barSizeSetting=bar_size,
            whatToShow=what_to_show,
            useRTH=use_rth,
            formatDate=FORMAT_DATE_EPOCH_UTC,
            timeout=self.config.request_timeout,
        )

    def head_timestamp(self, spec: ContractSpec, what_to_show: str = "TRADES") -> dt.date:
        """Return the first session IB has data for; paced like small bars, as IB requires.

        :param spec: the contract.
        :param what_to_show: IB's ``whatToShow``.
        :raises IbkrNoDataError: IB has no head timestamp for the contract.
        :raises IbkrError: one subclass per failure class, see ``ibkr_market_data.errors``.
        """
        what = f"head timestamp for {spec}"
        first = self._run(
            self._send(
                what,
                lambda ib: self._head_timestamp(ib, spec.to_ib(), what_to_show, what),
                (f"{spec}|{what_to_show}", f"{spec}|head|{what_to_show}"),
            )
        )
        if not first:
            raise IbkrNoDataError(f"IB has no head timestamp for {spec}")
        if not isinstance(first, dt.datetime):
            return first
        # A session is named by its date in the exchange's zone: an ASX open is the previous day in UTC.
        if first.tzinfo is None:
            first = first.replace(tzinfo=dt.UTC)
        if spec.primary_exchange:
            from zoneinfo import ZoneInfo

            from ibkr_market_data import calendars

            first = first.astimezone(ZoneInfo(calendars.time_zone(spec.primary_exchange)))
        return first.date()

    async def _head_timestamp(self, ib: IB, contract: Contract, what_to_show: str, what: str) -> dt.datetime:
        """Ask ``reqHeadTimeStamp`` with a timeout, written out: the client hides the id a cancel needs."""
        req_id = ib.client.getReqId()
        answer: asyncio.Future[dt.datetime] = ib.wrapper.startReq(req_id, contract)
        ib.client.reqHeadTimeStamp(req_id, contract, what_to_show, True, FORMAT_DATE_EXCHANGE_LOCAL)
        try:
            first = await self._answer_within(answer, what)
        except IbkrTimeoutError:
            ib.client.cancelHeadTimeStamp(req_id)
            raise
        # IB keeps a head-timestamp request open even after answering it; the client cancels it too.
        ib.client.cancelHeadTimeStamp(req_id)
        return first
