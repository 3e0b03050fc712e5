"""One client connection: the handshake, message dispatch and the answer to each request.

The connect-time replies, and the order in which a request meets validation, IB's rules, the
faults and the model: docs/simulator.md#connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tws_simulator import history, ib_errors, messages
from tws_simulator.faults import ALL_SYMBOLS
from tws_simulator.ib_errors import IbError
from tws_simulator.market import SimContract
from tws_simulator.messages import ContractQuery
from tws_simulator.protocol import (
    FrameReader,
    IncomingMessage,
    OutgoingMessage,
    ProtocolError,
    encode_frame,
    negotiate_version,
    parse_version_range,
)
from tws_simulator.request_log import (
    KIND_CONTRACT_DETAILS,
    KIND_HEAD_TIMESTAMP,
    KIND_HISTORICAL,
    RequestRecord,
)
from tws_simulator.rules import RULE_DUPLICATE_CLIENT_ID, RULE_MAX_CLIENTS, IbRules, PacedRequest

if TYPE_CHECKING:
    import datetime as dt

    from tws_simulator.config import SimulatorConfig
    from tws_simulator.faults import FaultPlan
    from tws_simulator.market import MarketModel
    from tws_simulator.outage import ConnectivityOutage, HmdsOutage
    from tws_simulator.request_log import RequestLog
    from tws_simulator.served import ServedMarket


class SharedState(Protocol):
    """What a connection shares with the others of its simulator (``TwsSimulator`` is one)."""

    config: SimulatorConfig
    model: MarketModel
    served: ServedMarket
    faults: FaultPlan
    request_log: RequestLog
    rules: IbRules
    clients: dict[int, ClientConnection]
    connections: set[ClientConnection]
    outage: ConnectivityOutage
    hmds_outage: HmdsOutage

    def now(self) -> dt.datetime:
        """Return the market's now (aware, UTC)."""

    def register_client(self, client_id: int, connection: ClientConnection) -> bool:
        """Take ``client_id`` for ``connection``; return whether it was free."""

    def unregister(self, connection: ClientConnection) -> None:
        """Forget ``connection`` and free its client id."""


log = logging.getLogger(__name__)

_SMART = "SMART"


@dataclass
class _OpenRequest:
    """A request received and not yet answered."""

    record: RequestRecord
    counts_as_historical: bool
    timer: asyncio.TimerHandle | None = None
    #: It waited out an HMDS outage: it does not break the farm again when it is answered.
    waited_for_hmds: bool = False


class ContractNotResolved(Exception):
    """Raised when a request's contract matches none, or several, of the listings; carries IB's error."""

    def __init__(self, error: IbError) -> None:
        super().__init__(error.message)
        self.error = error


class ClientConnection(asyncio.Protocol):
    """The server side of one client socket."""

    def __init__(self, simulator: SharedState) -> None:
        self.simulator = simulator
        self.client_id: int | None = None
        self.server_version = 0
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._open: dict[int, _OpenRequest] = {}
        self._closed = False
        #: Loop time at which the connect-time account sync is done (``account_sync_ms``).
        self._synced_at = 0.0
        self._handlers: dict[int, Callable[[list[str]], None]] = {
            IncomingMessage.START_API: self._on_start_api,
            IncomingMessage.REQ_POSITIONS: lambda _: self._send_synced(OutgoingMessage.POSITION_END, 1),
            IncomingMessage.REQ_OPEN_ORDERS: lambda _: self._send_synced(OutgoingMessage.OPEN_ORDER_END, 1),
            IncomingMessage.REQ_COMPLETED_ORDERS: lambda _: self._send_synced(
                OutgoingMessage.COMPLETED_ORDERS_END
            ),
            IncomingMessage.REQ_ACCOUNT_UPDATES: self._on_account_updates,
            IncomingMessage.REQ_ACCOUNT_UPDATES_MULTI: self._on_account_updates_multi,
            IncomingMessage.REQ_EXECUTIONS: self._on_executions,
            IncomingMessage.REQ_IDS: lambda _: self._send(
                OutgoingMessage.NEXT_VALID_ID, 1, self.simulator.config.next_valid_id
            ),
            IncomingMessage.REQ_MANAGED_ACCTS: lambda _: self._send(
                OutgoingMessage.MANAGED_ACCOUNTS, 1, self.simulator.config.account
            ),
            IncomingMessage.REQ_CURRENT_TIME: lambda _: self._send(
                OutgoingMessage.CURRENT_TIME, 1, int(self.simulator.now().timestamp())
            ),
            IncomingMessage.REQ_MARKET_DATA_TYPE: lambda _: None,
            IncomingMessage.REQ_AUTO_OPEN_ORDERS: lambda _: None,
            IncomingMessage.CANCEL_POSITIONS: lambda _: None,
            IncomingMessage.CANCEL_ACCOUNT_UPDATES_MULTI: lambda _: None,
            IncomingMessage.REQ_CONTRACT_DETAILS: self._on_contract_details,
            IncomingMessage.REQ_HISTORICAL_DATA: self._on_historical_data,
            IncomingMessage.CANCEL_HISTORICAL_DATA: self._on_cancel_historical_data,
            IncomingMessage.REQ_HEAD_TIMESTAMP: self._on_head_timestamp,
            IncomingMessage.CANCEL_HEAD_TIMESTAMP: self._on_cancel_head_timestamp,
        }

    # -- socket ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the socket and count the connection among the simulator's."""
        self._transport = transport  # type: ignore[assignment]
        self.simulator.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Abandon the client's open requests and free its client id."""
        self._closed = True
        for req_id, pending in list(self._open.items()):
            self._forget(req_id, pending)
            self.simulator.request_log.finish(pending.record, "abandoned")
        self.simulator.unregister(self)
        log.debug("Client %s disconnected", self.client_id)

    def data_received(self, data: bytes) -> None:
        """Cut ``data`` into frames and handle each; close the socket on a protocol error."""
        try:
            frames = self._reader.feed(data)
        except ProtocolError as exc:
            log.warning("Closing connection: %s", exc)
            self.close()
            return
        for fields in frames:
            if self._closed:
                return
            try:
                self._dispatch(fields)
            except ProtocolError as exc:
                log.warning("Closing connection of client %s: %s", self.client_id, exc)
                self.close()
                return
            except Exception:
                log.exception("Ignoring a message the simulator failed to handle: %s", fields[:3])

    def close(self) -> None:
        """Close the client's socket, once."""
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.close()

    def _send(self, *fields: object) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(encode_frame([str(field) for field in fields]))

    def _send_synced(self, *fields: object) -> None:
        """Send a connect-time sync reply once the account sync is done (at once unless it takes time)."""
        loop = asyncio.get_running_loop()
        if self._synced_at > loop.time():
            loop.call_at(self._synced_at, self._send, *fields)
        else:
            self._send(*fields)

    def send_error(self, req_id: int, error: IbError, client_id: int | None = None) -> None:
        """Send IB's error message ``4`` for ``req_id`` (``-1``: a notice of no request, logged as sent).

        ``client_id``: the id a notice is about when the connection has none yet (a refused one).
        """
        if req_id == ib_errors.NO_REQUEST and not self._closed:
            self.simulator.request_log.add_notice(
                self.client_id if client_id is None else client_id, error.code
            )
        self._send(OutgoingMessage.ERROR, 2, req_id, error.code, error.message, "")

    # -- dispatch and connect-time messages --------------------------------------------------------

    def _dispatch(self, fields: list[str]) -> None:
        if not self.server_version:
            self._on_handshake(fields[0])
            return
        if not fields:
            return
        try:
            message_id = int(fields[0])
        except ValueError:
            log.warning("Ignoring a message with a non-numeric id: %s", fields[:3])
            return
        handler = self._handlers.get(message_id)
        if handler is None:
            log.info(
                "Ignoring unsupported message %s from client %s: %s", message_id, self.client_id, fields[:4]
            )
            return
        if self.client_id is None and message_id != IncomingMessage.START_API:
            log.warning("Ignoring message %s sent before startApi", message_id)
            return
        try:
            handler(fields)
        except messages.MalformedRequest as exc:
            log.warning("Malformed message %s from client %s: %s", message_id, self.client_id, exc)
            req_id = messages.request_id(fields)
            if req_id is not None:
                self.send_error(req_id, ib_errors.validation_failed(str(exc)))

    def _on_handshake(self, version_text: str) -> None:
        self.server_version = negotiate_version(parse_version_range(version_text))
        now = self.simulator.now()
        self._send(self.server_version, f"{now:%Y%m%d %H:%M:%S} UTC")

    def _on_start_api(self, fields: list[str]) -> None:
        client_id = messages.decode_start_api(fields)
        simulator = self.simulator
        if client_id in simulator.clients:
            simulator.rules.record(RULE_DUPLICATE_CLIENT_ID, client_id, None, "client id already in use")
            log.warning("Refusing client id %s: already in use", client_id)
            self.send_error(ib_errors.NO_REQUEST, ib_errors.client_id_in_use(), client_id)
            self.close()
            return
        if len(simulator.clients) >= simulator.config.max_clients:
            simulator.rules.record(
                RULE_MAX_CLIENTS, client_id, None, f"{len(simulator.clients)} clients connected"
            )
            log.warning("Refusing client id %s: %s clients connected", client_id, len(simulator.clients))
            self.send_error(
                ib_errors.NO_REQUEST, ib_errors.too_many_clients(simulator.config.max_clients), client_id
            )
            self.close()
            return
        simulator.register_client(client_id, self)
        self.client_id = client_id
        log.debug("Client %s connected (server version %s)", client_id, self.server_version)
        self._send(OutgoingMessage.NEXT_VALID_ID, 1, simulator.config.next_valid_id)
        self._send(OutgoingMessage.MANAGED_ACCOUNTS, 1, simulator.config.account)
        faults = simulator.faults
        notices = list(ib_errors.CONNECT_NOTICES) if faults.fires(ALL_SYMBOLS, "connect_notices") else []
        if simulator.hmds_outage.active:
            # IB Gateway tells a client that connects what state each farm is in: this one is broken.
            notices = [notice for notice in notices if notice != ib_errors.HMDS_FARM_OK]
            notices.append(ib_errors.HMDS_FARM_BROKEN)
        for notice in notices:
            self.send_error(ib_errors.NO_REQUEST, notice)
        sync_ms = faults.number(ALL_SYMBOLS, "account_sync_ms")
        if sync_ms:
            self._synced_at = asyncio.get_running_loop().time() + sync_ms / 1000.0

    def _on_account_updates(self, fields: list[str]) -> None:
        account = fields[3] if len(fields) > 3 and fields[3] else self.simulator.config.account
        if len(fields) > 2 and fields[2] == "1":
            self._send_synced(OutgoingMessage.ACCOUNT_DOWNLOAD_END, 1, account)

    def _on_account_updates_multi(self, fields: list[str]) -> None:
        if len(fields) > 2:
            self._send_synced(OutgoingMessage.ACCOUNT_UPDATE_MULTI_END, 1, fields[2])

    def _on_executions(self, fields: list[str]) -> None:
        if len(fields) > 2:
            self._send_synced(OutgoingMessage.EXECUTION_DETAILS_END, 1, fields[2])

    # -- shared request machinery ----------------------------------------------------------------

    def _new_record(self, kind: str, req_id: int, query: ContractQuery, **extra: object) -> RequestRecord:
        symbol = query.symbol
        if not symbol and query.con_id:
            symbol = self.simulator.served.symbol_of_con_id(query.con_id)
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        record = RequestRecord(
            client_id=self.client_id if self.client_id is not None else -1,
            client_port=int(peer[1]) if peer else 0,
            req_id=req_id,
            kind=kind,
            symbol=symbol,
            con_id=query.con_id,
            exchange=query.exchange,
            primary_exchange=query.primary_exchange,
            **extra,  # type: ignore[arg-type]
        )
        return self.simulator.request_log.add(record)

    def _fail(self, record: RequestRecord, error: IbError) -> None:
        # Record before answering: once the client has the answer, the log must already say so.
        self.simulator.request_log.finish(record, f"error:{error.code}", error.code, error.message)
        self.send_error(record.req_id, error)

    def _forget(self, req_id: int, pending: _OpenRequest) -> None:
        self._open.pop(req_id, None)
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.counts_as_historical and self.client_id is not None:
            self.simulator.rules.release(self.client_id, req_id)

    def _schedule(
        self, record: RequestRecord, counts_as_historical: bool, answer: Callable[[], None]
    ) -> None:
        """Keep the request open and answer it after the symbol's fault latency."""
        pending = _OpenRequest(record, counts_as_historical)
        self._open[record.req_id] = pending

        def run() -> None:
            if self._open.get(record.req_id) is not pending:
                return  # cancelled meanwhile
            pending.timer = None
            if self._transport is None or self._transport.is_closing():
                # The client's end of the socket is read (connection_lost comes next): nobody to answer.
                self._forget(record.req_id, pending)
                self.simulator.request_log.finish(record, "abandoned")
                return
            faults = self.simulator.faults
            if self._held_by_outage(record, pending, run):
                return
            if counts_as_historical and self._held_by_hmds_outage(record, pending, run):
                return
            if faults.fires(record.symbol, "farm_notices"):
                for notice in ib_errors.FARM_NOTICES:
                    self.send_error(ib_errors.NO_REQUEST, notice)
            if faults.fires(record.symbol, "drop_connection"):
                log.info("Fault: dropping client %s during request %s", self.client_id, record.req_id)
                self.simulator.request_log.finish(record, "dropped")
                self._forget(record.req_id, pending)
                self.close()
                return
            if faults.fires(record.symbol, "never_answer"):
                log.info(
                    "Fault: request %s of client %s will never be answered", record.req_id, self.client_id
                )
                return
            self._forget(record.req_id, pending)
            answer()

        delay = self.simulator.faults.latency_seconds(record.symbol)
        if counts_as_historical:
            # IB's HMDS queue: the more historical requests open on the gateway, the slower each answer.
            per_open = self.simulator.faults.number(record.symbol, "latency_per_open_request_ms")
            delay += per_open / 1000.0 * self.simulator.rules.open_requests
        if delay > 0:
            pending.timer = asyncio.get_running_loop().call_later(delay, run)
        else:
            run()

    def _held_by_outage(
        self, record: RequestRecord, pending: _OpenRequest, answer: Callable[[], None]
    ) -> bool:
        """Return whether IB's link is down (or goes down now) for this answer: it waits, or is lost."""
        outage, faults, symbol = self.simulator.outage, self.simulator.faults, record.symbol
        if not outage.active:
            if faults.fires(symbol, "connectivity_lost"):
                outage.begin(faults.outage_seconds(symbol), data_lost=False)
            elif faults.fires(symbol, "connectivity_lost_data_lost"):
                outage.begin(faults.outage_seconds(symbol), data_lost=True)
        if not outage.active:
            return False
        if outage.data_lost:
            log.info(
                "Fault: request %s of client %s lost in a connectivity outage", record.req_id, self.client_id
            )
            self.simulator.request_log.finish(record, "lost")
            self._forget(record.req_id, pending)
        else:
            outage.defer(answer)
        return True

    def _held_by_hmds_outage(
        self, record: RequestRecord, pending: _OpenRequest, answer: Callable[[], None]
    ) -> bool:
        """Whether the HMDS farm is down (or breaks now) for this answer: it waits for 2106, or fails."""
        outage, faults, symbol = self.simulator.hmds_outage, self.simulator.faults, record.symbol
        if not outage.active and not pending.waited_for_hmds:
            if faults.fires(symbol, "hmds_farm_stall"):
                outage.begin(faults.outage_seconds(symbol), failing=False)
            elif faults.fires(symbol, "hmds_farm_fail"):
                outage.begin(faults.outage_seconds(symbol), failing=True)
        if not outage.active:
            return False
        if outage.failing:
            self._forget(record.req_id, pending)
            self._fail(record, ib_errors.hmds_farm_broken())
        else:
            pending.waited_for_hmds = True
            outage.defer(answer)
        return True

    def _resolve(self, query: ContractQuery, symbol: str, what_to_show: str = "") -> list[SimContract]:
        """Contracts matching ``query`` now: by conId if given, else symbol, secType, currency, exchanges.

        ``what_to_show`` is given for history requests: a delisted contract asked for by conId then
        answers its ``delisting`` error (162 no data or 200); otherwise it is no contract (200).
        """
        faults = self.simulator.faults
        if faults.fires(symbol, "unknown_contract"):
            raise ContractNotResolved(ib_errors.no_security_definition())
        if not query.con_id and not query.primary_exchange and faults.fires(symbol, "ambiguous"):
            raise ContractNotResolved(ib_errors.ambiguous_contract(symbol))
        model, served, now = self.simulator.model, self.simulator.served, self.simulator.now()
        if query.con_id:
            contract = served.contract_by_con_id(query.con_id, now)
            if contract is None or (query.symbol and query.symbol != contract.symbol):
                raise ContractNotResolved(ib_errors.no_security_definition())
            delisting = served.properties(contract.symbol).delisting
            if delisting is not None and served.view(contract, now).delisted():
                if what_to_show and delisting.history_error == 162:
                    exchange = query.exchange or _SMART
                    raise ContractNotResolved(ib_errors.no_data(contract.symbol, exchange, what_to_show))
                raise ContractNotResolved(ib_errors.no_security_definition())
            return [contract]
        exchange = query.exchange.upper()
        listed = [served.contract_as_of(contract, now) for contract in model.contracts_named(query.symbol)]
        matches = [
            contract
            for contract in listed
            if contract is not None
            and query.sec_type in ("", contract.sec_type)
            and query.currency in ("", contract.currency)
            and exchange in ("", _SMART, contract.exchange, contract.primary_exchange)
            and query.primary_exchange.upper() in ("", contract.primary_exchange)
        ]
        if not matches:
            raise ContractNotResolved(ib_errors.no_security_definition())
        return matches

    def _resolve_one(self, query: ContractQuery, symbol: str, what_to_show: str) -> SimContract:
        matches = self._resolve(query, symbol, what_to_show)
        if len(matches) > 1:
            raise ContractNotResolved(ib_errors.ambiguous_contract(symbol))
        return matches[0]

    # -- contract details ------------------------------------------------------------------------

    def _on_contract_details(self, fields: list[str]) -> None:
        request = messages.decode_contract_details(fields)
        record = self._new_record(KIND_CONTRACT_DETAILS, request.req_id, request.contract)
        self._schedule(record, False, lambda: self._answer_contract_details(record, request.contract))

    def _answer_contract_details(self, record: RequestRecord, query: ContractQuery) -> None:
        try:
            matches = self._resolve(query, record.symbol or query.symbol)
        except ContractNotResolved as exc:
            self._fail(record, exc.error)
            return
        for contract in matches:
            self._send(*contract_details_fields(record.req_id, contract, query.exchange or contract.exchange))
        self.simulator.request_log.finish(record, f"details:{len(matches)}")
        self._send(OutgoingMessage.CONTRACT_DETAILS_END, 1, record.req_id)

    # -- historical data -------------------------------------------------------------------------

    def _on_historical_data(self, fields: list[str]) -> None:
        request = messages.decode_historical_data(fields)
        record = self._new_record(
            KIND_HISTORICAL,
            request.req_id,
            request.contract,
            bar_size=request.bar_size,
            duration=request.duration,
            end_date_time=request.end_date_time,
            what_to_show=request.what_to_show,
            use_rth=request.use_rth,
        )
        simulator = self.simulator
        now = simulator.now()
        try:
            query = history.build_query(
                end_date_time=request.end_date_time,
                duration=request.duration,
                bar_size=request.bar_size,
                use_rth=request.use_rth,
                what_to_show=request.what_to_show,
                format_date=request.format_date,
                now=now,
                login_time_zone=simulator.config.login_time_zone,
            )
        except history.InvalidRequest as exc:
            self._fail(record, exc.error)
            return
        paced = None
        if simulator.rules.is_small(query.bar_seconds):
            contract_key = (
                request.contract.con_id or record.symbol,
                request.contract.exchange,
                request.what_to_show,
            )
            paced = PacedRequest(
                identity=(
                    KIND_HISTORICAL,
                    contract_key,
                    request.bar_size,
                    request.duration,
                    request.end_date_time,
                    request.use_rth,
                ),
                contract_key=contract_key,
                weight=2 if request.what_to_show == "BID_ASK" else 1,
            )
        refusal = simulator.rules.admit(self.client_id or 0, request.req_id, paced)
        if refusal is not None:
            self._fail(record, refusal)
            return
        self._schedule(record, True, lambda: self._answer_historical(record, request, query))

    def _answer_historical(
        self, record: RequestRecord, request: messages.HistoricalDataRequest, query: history.HistoryQuery
    ) -> None:
        simulator = self.simulator
        symbol = record.symbol or request.contract.symbol
        try:
            contract = self._resolve_one(request.contract, symbol, request.what_to_show)
        except ContractNotResolved as exc:
            self._fail(record, exc.error)
            return
        exchange = request.contract.exchange or _SMART
        faults = simulator.faults
        if faults.fires(symbol, "no_permission"):
            self._fail(record, ib_errors.not_subscribed())
            return
        if faults.fires(symbol, "pacing_violation"):
            self._fail(record, ib_errors.pacing_violation())
            return
        if faults.fires(symbol, "open_requests_refused"):
            self._fail(record, ib_errors.too_many_open_requests(simulator.config.max_open_requests))
            return
        if faults.fires(symbol, "no_data"):
            self._fail(record, ib_errors.no_data(contract.symbol, exchange, request.what_to_show))
            return
        try:
            bars = history.select_bars(
                simulator.served, contract, query, simulator.now(), simulator.config.max_bars_per_request
            )
        except history.InvalidRequest as exc:
            self._fail(record, exc.error)
            return
        if not bars:
            self._fail(record, ib_errors.no_data(contract.symbol, exchange, request.what_to_show))
            return
        if (
            query.bar_seconds is not None
            and query.bar_seconds >= history.INTRADAY_MISMATCH_MIN_BAR_SECONDS
            and faults.fires(symbol, "intraday_mismatch")
        ):
            bars = history.with_intraday_mismatch(simulator.model, contract, bars)
        if (
            query.bar_seconds is not None
            and query.bar_seconds >= history.COARSE_BARS_MIN_BAR_SECONDS
            and faults.fires(symbol, "coarse_bars_disagree")
        ):
            bars = history.with_coarse_bars_disagreeing(bars)
        answer = history.format_answer(
            contract,
            query,
            bars,
            corrupt=faults.fires(symbol, "corrupt_bars"),
            corrupt_first=faults.fires(symbol, "corrupt_first_bar"),
            defects=[defect for defect in history.DATA_DEFECTS if faults.fires(symbol, defect)],
            naive_time_zone=(
                simulator.config.login_time_zone
                if query.bar_seconds is not None and faults.fires(symbol, "naive_bar_times")
                else None
            ),
        )
        rows = answer.bars
        key = f"{simulator.config.seed}|wire|{symbol}|{query.start:%Y%m%d%H%M%S}|{len(rows)}"
        # Message 17 ends the request in the client: the newest bar sent after it arrives as an update
        # (90). It is taken before any shuffle, so it is the newest whatever order the rest come in.
        late = rows[-1:] if rows and faults.fires(symbol, "split_answer") else []
        rows = rows[: len(rows) - len(late)]
        if faults.fires(symbol, "bars_out_of_order"):
            rows = history.out_of_order(rows, key)
        if faults.fires(symbol, "duplicate_bar"):
            rows = history.with_duplicate(rows, key)
        fields: list[str] = [
            str(int(OutgoingMessage.HISTORICAL_DATA)),
            str(record.req_id),
            answer.start_text,
            answer.end_text,
            str(len(rows)),
        ]
        for bar in rows:
            fields.extend(bar)
        simulator.request_log.finish(record, f"bars:{len(rows) + len(late)}")
        if not self._closed and self._transport is not None:
            self._transport.write(encode_frame(fields))
            for bar in late:
                update = [str(int(OutgoingMessage.HISTORICAL_DATA_UPDATE)), str(record.req_id)]
                self._transport.write(encode_frame(update + history.update_fields(bar)))

    def _on_cancel_historical_data(self, fields: list[str]) -> None:
        req_id = messages.decode_cancel_historical_data(fields)
        pending = self._open.get(req_id)
        if pending is None or pending.record.kind != KIND_HISTORICAL:
            self.send_error(req_id, ib_errors.no_query_found(req_id))
            return
        self._forget(req_id, pending)
        self.simulator.request_log.finish(pending.record, "cancelled")
        self.send_error(req_id, ib_errors.query_cancelled(req_id))

    # -- head timestamp --------------------------------------------------------------------------

    def _on_head_timestamp(self, fields: list[str]) -> None:
        request = messages.decode_head_timestamp(fields)
        record = self._new_record(
            KIND_HEAD_TIMESTAMP,
            request.req_id,
            request.contract,
            what_to_show=request.what_to_show,
            use_rth=request.use_rth,
        )
        if request.what_to_show not in history.TRADE_TYPES | history.QUOTE_TYPES:
            self._fail(record, ib_errors.validation_failed(f"Invalid what to show: {request.what_to_show}"))
            return
        contract_key = (
            request.contract.con_id or record.symbol,
            request.contract.exchange,
            request.what_to_show,
        )
        paced = PacedRequest(
            identity=(KIND_HEAD_TIMESTAMP, contract_key, request.use_rth),
            contract_key=contract_key,
        )
        refusal = self.simulator.rules.admit(self.client_id or 0, request.req_id, paced)
        if refusal is not None:
            self._fail(record, refusal)
            return
        self._schedule(record, True, lambda: self._answer_head_timestamp(record, request))

    def _answer_head_timestamp(self, record: RequestRecord, request: messages.HeadTimestampRequest) -> None:
        symbol = record.symbol or request.contract.symbol
        try:
            contract = self._resolve_one(request.contract, symbol, request.what_to_show)
        except ContractNotResolved as exc:
            self._fail(record, exc.error)
            return
        faults = self.simulator.faults
        if faults.fires(symbol, "no_permission"):
            self._fail(record, ib_errors.not_subscribed())
            return
        if faults.fires(symbol, "pacing_violation"):
            self._fail(record, ib_errors.pacing_violation())
            return
        if faults.fires(symbol, "no_data"):
            self._fail(
                record,
                ib_errors.no_data(contract.symbol, request.contract.exchange or _SMART, request.what_to_show),
            )
            return
        text = history.head_timestamp_text(self.simulator.model, contract, request.format_date)
        self.simulator.request_log.finish(record, "timestamp")
        self._send(OutgoingMessage.HEAD_TIMESTAMP, record.req_id, text)

    def _on_cancel_head_timestamp(self, fields: list[str]) -> None:
        req_id = messages.decode_cancel_head_timestamp(fields)
        pending = self._open.get(req_id)
        if pending is not None and pending.record.kind == KIND_HEAD_TIMESTAMP:
            self._forget(req_id, pending)
            self.simulator.request_log.finish(pending.record, "cancelled")


def contract_details_fields(req_id: int, contract: SimContract, exchange: str) -> list[object]:
    """Return message ``10`` at server version >= 164 (no version field, ends with the size increments)."""
    routing = "SMART" if contract.primary_exchange != "ASX" else "ASX"
    return [
        OutgoingMessage.CONTRACT_DETAILS,
        req_id,
        contract.symbol,
        contract.sec_type,
        "",  # lastTradeDateOrContractMonth
        0,  # strike
        "",  # right
        exchange.upper() or routing,
        contract.currency,
        contract.symbol,  # localSymbol
        contract.symbol,  # marketName
        contract.symbol,  # tradingClass
        contract.con_id,
        f"{contract.min_tick:f}",
        "",  # multiplier
        "ACTIVETIM,ADJUST,ALERT,ALLOC,DAY,GTC,LMT,MKT,STP",  # orderTypes
        f"{routing},{contract.primary_exchange}" if routing != contract.primary_exchange else routing,
        1,  # priceMagnifier
        0,  # underConId
        contract.long_name.replace("\\", "/"),  # the client unicode-unescapes it
        contract.primary_exchange,
        "",  # contractMonth
        "",  # industry
        "",  # category
        "",  # subcategory
        contract.time_zone_id,
        "",  # tradingHours
        "",  # liquidHours
        "",  # evRule
        "",  # evMultiplier
        0,  # secIdList count
        1,  # aggGroup
        "",  # underSymbol
        "",  # underSecType
        "26",  # marketRuleIds
        "",  # realExpirationDate
        "ETF" if contract.asset_class == "etf" else "COMMON",
        1,  # minSize
        1,  # sizeIncrement
        100,  # suggestedSizeIncrement
    ]
