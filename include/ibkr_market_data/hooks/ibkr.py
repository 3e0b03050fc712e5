"""Airflow hook for Interactive Brokers' TWS / IB Gateway API."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from ibkr_market_data.bars import SMALL_BAR_SIZES, Bar, bars_from_ib
from ibkr_market_data.client_ids import ClientIdLease, ClientIdsExhaustedError, LocalClientIdLease
from ibkr_market_data.contracts import ContractSpec, ResolvedContract
from ibkr_market_data.errors import (
    IbkrAmbiguousContractError,
    IbkrClientIdInUseError,
    IbkrConnectionError,
    IbkrError,
    IbkrNoDataError,
    IbkrTimeoutError,
    IbkrUnknownContractError,
    classify_error,
)

if TYPE_CHECKING:
    from ibkr_market_data.ib_client import IB

log = logging.getLogger(__name__)

#: Waits for the right to send a small-bar request: ``pacer(contract_key, request_key)``.
Pacer = Callable[[str, str], None]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _ensure_event_loop() -> None:
    """The IB client (even its import) needs an event loop on the calling thread; a worker thread has none."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


class IbkrHook(BaseHook):
    """
    Talks to TWS or IB Gateway through the TWS socket API (``ib_insync``).

    Connection fields: ``host`` (default ``127.0.0.1``) and ``port`` (default ``4002``, IB Gateway
    paper; 4001 live, TWS 7497 paper / 7496 live). IB Gateway has no API password: it trusts the
    socket, so bind it to loopback or a private network. Extras, all optional:

    * ``client_id`` (int, default 1): first API client id this hook may use.
    * ``client_id_range`` (int, default 32): how many ids from ``client_id`` it may lease; each live
      connection leases one, so this bounds concurrent connections (TWS allows 32 clients).
    * ``readonly`` (bool, default true): connect read-only; no order state is synchronised.
    * ``account`` (str, default empty): account to synchronise at connect; empty for the only one.
    * ``market_data_type`` (int 1-4, default 1): 1 live, 2 frozen, 3 delayed, 4 delayed-frozen.
    * ``connect_timeout`` (seconds, default 10): handshake and connect-time sync.
    * ``request_timeout`` (seconds, default 60): one historical or contract request; on expiry the
      request is cancelled and ``IbkrTimeoutError`` raised.

    Use as a context manager, which always disconnects::

        with IbkrHook() as hook:
            bars = hook.fetch_bars(ContractSpec("AAPL", primary_exchange="NASDAQ"), end, "1 D", "1 day")

    :param ibkr_conn_id: the Airflow connection to use.
    :param client_id_lease: where client ids come from; default: process-local over the
        connection's range. Tasks on several workers pass a ``PostgresClientIdLease``.
    :param pacer: called before every request that IB's hard pacing limits cover (bars of 30
        seconds or less, head timestamps); it blocks until the request may be sent.
    """

    conn_name_attr = "ibkr_conn_id"
    default_conn_name = "ibkr_default"
    conn_type = "ibkr"
    hook_name = "Interactive Brokers (TWS / IB Gateway)"

    default_port = 4002

    def __init__(
        self,
        ibkr_conn_id: str = default_conn_name,
        client_id_lease: ClientIdLease | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        super().__init__()
        self.ibkr_conn_id = ibkr_conn_id
        conn = self.get_connection(ibkr_conn_id)
        extras = conn.extra_dejson
        self.host = conn.host or "127.0.0.1"
        self.port = int(conn.port or self.default_port)
        self.first_client_id = int(extras.get("client_id", 1))
        self.client_id_range = int(extras.get("client_id_range", 32))
        self.readonly = _as_bool(extras.get("readonly", True))
        self.account = str(extras.get("account", ""))
        self.market_data_type = int(extras.get("market_data_type", 1))
        self.connect_timeout = float(extras.get("connect_timeout", 10))
        self.request_timeout = float(extras.get("request_timeout", 60))
        self.client_id_lease = client_id_lease or LocalClientIdLease(
            self.first_client_id, self.client_id_range
        )
        self.pacer = pacer
        self.client_id: int | None = None
        self._ib: IB | None = None
        self.requests_sent = 0

    # -- connection lifetime ------------------------------------------------------------------

    def get_conn(self) -> IB:
        """A connected ``IB`` client, leasing a client id; reconnects if the socket dropped."""
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        self.close()
        _ensure_event_loop()
        from ibkr_market_data.ib_client import IB, util

        while True:
            try:
                client_id = self.client_id_lease.acquire()
            except ClientIdsExhaustedError as exc:
                raise IbkrClientIdInUseError(str(exc)) from exc
            ib = IB()
            ib.RaiseRequestErrors = True
            try:
                util.run(self._connect(ib, client_id))
            except IbkrClientIdInUseError:
                log.warning("Client id %s is in use by another API client; leasing another", client_id)
                continue  # the clashing id stays leased, so acquire() moves on
            except IbkrError:
                self.client_id_lease.release_all()
                raise
            self._ib, self.client_id = ib, client_id
            if self.market_data_type != 1:
                ib.reqMarketDataType(self.market_data_type)
            log.info("Connected to IB at %s:%s as client %s", self.host, self.port, client_id)
            return ib

    async def _connect(self, ib: IB, client_id: int) -> None:
        """Connect, failing fast on 326 instead of waiting out the timeout as the client does."""
        clash: asyncio.Future[str] = asyncio.get_event_loop().create_future()

        def on_error(req_id: int, code: int, message: str, contract: Any) -> None:
            if code == 326 and not clash.done():
                clash.set_result(message)

        ib.errorEvent += on_error
        connect = asyncio.ensure_future(
            ib.connectAsync(
                self.host,
                self.port,
                clientId=client_id,
                timeout=self.connect_timeout,
                readonly=self.readonly,
                account=self.account,
            )
        )
        try:
            await asyncio.wait({connect, clash}, return_when=asyncio.FIRST_COMPLETED)
            if clash.done():
                connect.cancel()
                ib.client.disconnect()  # IB.disconnect() refuses a socket whose API is not ready
                raise IbkrClientIdInUseError(clash.result(), 326)
            connect.result()
        except (ConnectionError, OSError, TimeoutError) as exc:
            ib.client.disconnect()
            raise IbkrConnectionError(
                f"Could not connect to TWS / IB Gateway at {self.host}:{self.port} "
                f"(client id {client_id}): {exc!r}"
            ) from exc
        finally:
            ib.errorEvent -= on_error

    def close(self) -> None:
        """Disconnect and give back the client ids; safe to call twice."""
        if self._ib is not None:
            self._ib.disconnect()
            self._ib = None
        self.client_id = None
        self.client_id_lease.release_all()

    def __enter__(self) -> IbkrHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Connect and ask for IB's clock, as the UI's Test button does."""
        try:
            with self:
                server_time = self.get_conn().reqCurrentTime()
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to {self.host}:{self.port}; server time {server_time.isoformat()}"

    # -- requests -----------------------------------------------------------------------------

    def _run(self, request: Callable[[IB], Any], what: str) -> Any:
        """Run one request, turning every failure into its IbkrError class."""
        from ibkr_market_data.ib_client import RequestError

        ib = self.get_conn()
        self.requests_sent += 1
        try:
            return request(ib)
        except RequestError as exc:
            raise classify_error(exc.code, exc.message) from exc
        except ConnectionError as exc:
            self.close()
            raise IbkrConnectionError(f"Connection lost during {what}: {exc}") from exc

    def resolve_contract(self, spec: ContractSpec) -> ResolvedContract:
        """IB's one contract for ``spec``; raises IbkrUnknownContractError / IbkrAmbiguousContractError."""
        _ensure_event_loop()
        details = self._run(lambda ib: ib.reqContractDetails(spec.to_ib()), f"contract details for {spec}")
        if not details:
            raise IbkrUnknownContractError(f"No security definition has been found for {spec}", 200)
        if len(details) > 1:
            raise IbkrAmbiguousContractError(
                f"{spec} matches {len(details)} contracts; give its primary exchange or conId", 200
            )
        contract = details[0].contract
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
        """
        Bars of ``bar_size`` covering ``duration`` up to ``end``, validated.

        :param end: an aware datetime, or an IB end string such as ``"20250115 23:59:59 Australia/Sydney"``.
        :raises IbkrNoDataError: IB has no bars there (holiday, before listing).
        :raises InvalidBarError: a bar breaks OHLC rules; nothing of the response should be stored.
        :raises IbkrError: one subclass per failure class, see ``ibkr_market_data.errors``.
        """
        if isinstance(end, dt.datetime):
            if end.tzinfo is None:
                raise ValueError("fetch_bars needs an aware end datetime")
            end = end.astimezone(dt.UTC).strftime("%Y%m%d-%H:%M:%S")
        if bar_size in SMALL_BAR_SIZES and self.pacer is not None:
            self.get_conn()  # connect first: the pacer's clock must start when the request leaves
            request_key = f"{spec}|{end}|{duration}|{bar_size}|{what_to_show}|{int(use_rth)}"
            self.pacer(f"{spec}|{what_to_show}", request_key)
        _ensure_event_loop()
        contract = spec.to_ib()
        started = time.monotonic()
        ib_bars = self._run(
            lambda ib: ib.reqHistoricalData(
                contract,
                endDateTime=end,
                durationStr=duration,
                barSizeSetting=bar_size,
                whatToShow=what_to_show,
                useRTH=use_rth,
                formatDate=2,
                timeout=self.request_timeout,
            ),
            f"historical data for {spec}",
        )
        if not ib_bars:
            # The client answers a timeout with an empty list after cancelling the request.
            if time.monotonic() - started >= self.request_timeout * 0.99:
                raise IbkrTimeoutError(
                    f"No answer within {self.request_timeout:.0f} s for {duration} of {bar_size} bars of {spec}"
                )
            raise IbkrNoDataError(f"IB returned no bars for {duration} of {bar_size} to {end} for {spec}")
        return bars_from_ib(ib_bars)

    def head_timestamp(self, spec: ContractSpec, what_to_show: str = "TRADES") -> dt.date:
        """The first date IB has data for; paced like small bars, as IB requires."""
        if self.pacer is not None:
            self.get_conn()
            self.pacer(f"{spec}|{what_to_show}", f"{spec}|head|{what_to_show}")
        _ensure_event_loop()
        contract = spec.to_ib()
        first = self._run(
            lambda ib: ib.reqHeadTimeStamp(contract, whatToShow=what_to_show, useRTH=True, formatDate=1),
            f"head timestamp for {spec}",
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
