"""The IBKR hook against the TWS simulator: real ib_insync client, real socket."""

import asyncio
import datetime as dt
import functools
import json
import socket

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowNotFoundException

from ibkr_market_data import errors
from ibkr_market_data.client_ids import PostgresClientIdLease
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.daily_plan import ib_end_of_day
from ibkr_market_data.errors import IbkrConfigError, InvalidBarError
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.ib_client import IB

BHP = ContractSpec("BHP", exchange="ASX", primary_exchange="ASX", currency="AUD")
AAPL = ContractSpec("AAPL", primary_exchange="NASDAQ")
SESSION = dt.date(2025, 1, 15)


def fetch_day(hook, spec, day=SESSION):
    return hook.fetch_bars(spec, ib_end_of_day(day, spec.primary_exchange or "NASDAQ"), "1 D", "1 day")


def test_daily_bar_equals_the_simulators(ibkr_connection):
    with IbkrHook() as hook:
        (bar,) = fetch_day(hook, BHP)
    expected = ibkr_connection.model.daily_bar("BHP", SESSION)
    assert bar.timestamp == dt.datetime(2025, 1, 15)
    assert (bar.open, bar.high, bar.low, bar.close) == (
        expected.open,
        expected.high,
        expected.low,
        expected.close,
    )
    assert bar.volume == expected.volume
    assert ibkr_connection.violations() == []


def test_range_request_returns_only_sessions(ibkr_connection):
    with IbkrHook() as hook:
        bars = hook.fetch_bars(AAPL, ib_end_of_day(dt.date(2025, 1, 21), "NASDAQ"), "7 D", "1 day")
    # 18/19 Jan weekend, 20 Jan Martin Luther King Day.
    assert [bar.session_date for bar in bars] == [dt.date(2025, 1, d) for d in (15, 16, 17, 21)]


def test_resolve_contract_gives_con_id_and_primary_exchange(ibkr_connection):
    with IbkrHook() as hook:
        resolved = hook.resolve_contract(ContractSpec("CBA", exchange="ASX", currency="AUD"))
    assert resolved.con_id == ibkr_connection.model.contract("CBA").con_id
    assert resolved.primary_exchange == "ASX"


@pytest.mark.parametrize(
    ("fault", "expected", "code"),
    [
        ({"no_permission": True}, errors.IbkrPermissionError, 354),
        ({"unknown_contract": True}, errors.IbkrUnknownContractError, 200),
        ({"no_data": True}, errors.IbkrNoDataError, 162),
        ({"pacing_violation": True}, errors.IbkrPacingError, 162),
        ({"open_requests_refused": True}, errors.IbkrPacingError, 322),
    ],
)
def test_each_ib_error_becomes_its_exception(ibkr_connection, fault, expected, code):
    ibkr_connection.faults.set("AAPL", **fault)
    with IbkrHook() as hook, pytest.raises(expected) as raised:
        fetch_day(hook, AAPL)
    assert raised.value.code == code


def test_ambiguous_contract_needs_primary_exchange(ibkr_connection):
    ibkr_connection.faults.set("AAPL", ambiguous=True)
    with IbkrHook() as hook:
        with pytest.raises(errors.IbkrAmbiguousContractError):
            fetch_day(hook, ContractSpec("AAPL"))
        assert len(fetch_day(hook, AAPL)) == 1


def test_holiday_is_no_data(ibkr_connection):
    with IbkrHook() as hook, pytest.raises(errors.IbkrNoDataError):
        fetch_day(hook, BHP, dt.date(2025, 1, 27))  # Australia Day


def test_corrupt_bars_are_rejected(ibkr_connection):
    ibkr_connection.faults.set("AAPL", corrupt_bars=True)
    with IbkrHook() as hook, pytest.raises(InvalidBarError, match="below low|negative"):
        fetch_day(hook, AAPL)


def test_dropped_connection_is_a_retryable_connection_error(ibkr_connection):
    ibkr_connection.faults.set("AAPL", drop_connection=1)
    with IbkrHook() as hook:
        with pytest.raises(errors.IbkrConnectionError) as raised:
            fetch_day(hook, AAPL)
        assert raised.value.retryable
        # The next call reconnects.
        assert len(fetch_day(hook, AAPL)) == 1


def test_unanswered_request_times_out(ibkr_connection, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{ibkr_connection.host}:{ibkr_connection.port}?client_id=10&request_timeout=1",
    )
    ibkr_connection.faults.set("AAPL", never_answer=True)
    with IbkrHook() as hook, pytest.raises(errors.IbkrTimeoutError) as raised:
        fetch_day(hook, AAPL)
    assert raised.value.retryable
    cancelled = ibkr_connection.request_log.wait_until(
        lambda log: any(r.outcome == "cancelled" for r in log.historical(symbol="AAPL"))
    )
    assert cancelled, ibkr_connection.request_log.outcomes("historical", symbol="AAPL")


def test_unreachable_gateway_is_a_connection_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", "ibkr://127.0.0.1:9?connect_timeout=2")
    with IbkrHook() as hook, pytest.raises(errors.IbkrConnectionError, match="127.0.0.1:9"):
        hook.get_conn()
    ok, message = IbkrHook().test_connection()
    assert not ok and "127.0.0.1:9" in message


class OrderedLease:
    """Offers ids in a fixed order, so the test knows which one clashes."""

    def __init__(self, ids):
        self.ids, self.held, self.released = list(ids), [], []

    def acquire(self):
        self.held.append(self.ids.pop(0))
        return self.held[-1]

    def release_all(self):
        self.released += self.held
        self.held = []


def test_client_id_in_use_leases_another(ibkr_connection):
    squatter = IB()
    squatter.connect(ibkr_connection.host, ibkr_connection.port, clientId=10, timeout=5, readonly=True)
    try:
        lease = OrderedLease([10, 11])  # the first id offered clashes with the squatter
        with IbkrHook(client_id_lease=lambda first, count: lease) as hook:
            hook.get_conn()
            assert hook.client_id == 11
            assert ibkr_connection.connected_client_ids() == {10, 11}
        assert lease.released == [10, 11]
    finally:
        squatter.disconnect()


def test_postgres_leases_never_share_an_id(ibkr_connection, market_db, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{ibkr_connection.host}:{ibkr_connection.port}?client_id=10&client_id_range=2",
    )
    connect = lambda: psycopg.connect(market_db, autocommit=True)  # noqa: E731
    with connect() as first, connect() as second, connect() as other_worker:
        # Each hook leases over the range its connection names: ids 10 and 11.
        hooks = [
            IbkrHook(client_id_lease=functools.partial(PostgresClientIdLease, first)),
            IbkrHook(client_id_lease=functools.partial(PostgresClientIdLease, second)),
        ]
        for hook in hooks:
            hook.get_conn()
        assert {hook.client_id for hook in hooks} == {10, 11}
        third = PostgresClientIdLease(other_worker, 10, 2)
        with pytest.raises(Exception, match="leased by other workers"):
            third.acquire()
        for hook in hooks:
            hook.close()
        assert third.acquire() in {10, 11}


def test_lease_is_made_from_the_connections_client_id_range(ibkr_connection):
    made = []

    def lease(first, count):
        made.append((first, count))
        return OrderedLease([first])

    hook = IbkrHook(client_id_lease=lease)
    assert made == [], "the connection is read on first use, not when the hook is made"
    with hook:
        hook.get_conn()
        assert hook.client_id == 10
    assert made == [(10, 32)]  # ibkr_connection: client_id=10&client_id_range=32


def test_head_timestamp_is_the_listing_session_in_the_exchanges_zone(ibkr_connection):
    # GYG lists on ASX on 2025-06-16; its 10:00 Sydney open is 00:00 UTC that day, and for listings in
    # Australian summer time the open falls on the previous UTC date.
    with IbkrHook() as hook:
        first = hook.head_timestamp(
            ContractSpec("GYG", exchange="ASX", primary_exchange="ASX", currency="AUD")
        )
        summer = hook.head_timestamp(BHP)
    assert first == ibkr_connection.model.listing_date("GYG") == dt.date(2025, 6, 16)
    bhp_first = ibkr_connection.model.listing_date("BHP")
    assert bhp_first.month in (1, 2, 3, 10, 11, 12), "the case needs a listing in Australian summer time"
    assert summer == bhp_first


# -- the connection: read on first use, each extra checked before anything connects -------------


def test_connection_is_read_on_first_use():
    hook = IbkrHook("ibkr_no_such_connection")  # as Airflow's hooks do: making one reads nothing
    with hook:
        pass  # closing a hook never used needs no connection either
    with pytest.raises(AirflowNotFoundException, match="ibkr_no_such_connection"):
        hook.get_conn()


@pytest.fixture
def silent_listener():
    """Yield a loopback socket that accepts TCP connections and never answers: any attempt stays queued."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        yield listener


def nobody_connected(listener):
    try:
        accepted, _ = listener.accept()
    except BlockingIOError:
        return True
    accepted.close()
    return False


@pytest.mark.parametrize(
    ("extra", "value"),
    [
        ("client_id_range", "0"),
        ("client_id_range", "33"),
        ("client_id_range", "abc"),
        ("readonly", "ture"),
        ("request_timeout", "0"),
        ("request_timeout", "-1"),
        ("market_data_type", "9"),
    ],
)
def test_bad_extra_is_refused_before_connecting(silent_listener, monkeypatch, extra, value):
    port = silent_listener.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT", f"ibkr://127.0.0.1:{port}?{extra}={value}&connect_timeout=2"
    )
    leases = []
    hook = IbkrHook(client_id_lease=lambda first, count: leases.append(count) or OrderedLease([first]))
    with hook, pytest.raises(IbkrConfigError, match=f"extra {extra} must be"):
        hook.get_conn()
    assert leases == [], "no client id was leased"
    assert nobody_connected(silent_listener)
    ok, message = IbkrHook().test_connection()
    assert not ok and f"extra {extra} must be" in message
    assert nobody_connected(silent_listener)


def test_null_extras_connect_with_the_defaults(tws_simulator, monkeypatch):
    extras = {"client_id": 12, "client_id_range": 1, "readonly": None, "account": ""}
    extras |= {"market_data_type": None, "connect_timeout": "", "request_timeout": None}
    connection = {
        "conn_type": "ibkr",
        "host": tws_simulator.host,
        "port": tws_simulator.port,
        "extra": extras,
    }
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", json.dumps(connection))
    with IbkrHook() as hook:
        hook.get_conn()
        assert hook.client_id == 12
        assert tws_simulator.connected_client_ids() == {12}
        assert (hook.config.readonly, hook.config.request_timeout) == (True, 60.0)


def test_unknown_extras_are_logged(ibkr_connection, monkeypatch, capfd):
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{ibkr_connection.host}:{ibkr_connection.port}?client_id=10&clientid=11&read_only=false",
    )
    capfd.readouterr()
    assert IbkrHook().config.client_id == 10
    logged = capfd.readouterr()
    # Airflow's task logging (structlog) writes the hook's log lines to the process's output.
    assert "ignoring unknown extras clientid, read_only" in logged.out + logged.err


# -- every request is bounded by request_timeout ------------------------------------------------


@pytest.fixture
def impatient_connection(ibkr_connection, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{ibkr_connection.host}:{ibkr_connection.port}?client_id=10&request_timeout=1",
    )
    return ibkr_connection


def test_unanswered_head_timestamp_times_out_and_is_cancelled(impatient_connection):
    impatient_connection.faults.set("BHP", never_answer=True)
    with IbkrHook() as hook:
        with pytest.raises(errors.IbkrTimeoutError, match="head timestamp for BHP") as raised:
            hook.head_timestamp(BHP)
        assert raised.value.retryable
        cancelled = impatient_connection.request_log.wait_until(
            lambda log: [r.outcome for r in log.head_timestamps(symbol="BHP")] == ["cancelled"]
        )
        assert cancelled, impatient_connection.request_log.outcomes("head_timestamp", symbol="BHP")
        # The connection stays usable: the next symbol's request is answered.
        assert hook.head_timestamp(AAPL) == impatient_connection.model.listing_date("AAPL")


def test_unanswered_contract_details_time_out(impatient_connection):
    impatient_connection.faults.set("CBA", never_answer=True)
    with IbkrHook() as hook:
        with pytest.raises(errors.IbkrTimeoutError, match="contract details for CBA") as raised:
            hook.resolve_contract(ContractSpec("CBA", exchange="ASX", currency="AUD"))
        assert raised.value.retryable
        # IB has no cancel for contract details; the connection carries on with the next request.
        resolved = hook.resolve_contract(AAPL)
    assert resolved.con_id == impatient_connection.model.contract("AAPL").con_id


# -- IB's own connectivity: 1100 pauses, 1102 continues, 1101 resubmits -----------------------------


def _notices(hook) -> list[int]:
    """Return the codes of IB's notices (reqId -1) the hook's connection hears from now on."""
    codes: list[int] = []
    hook.get_conn().errorEvent += lambda req_id, code, message, contract: req_id == -1 and codes.append(code)
    return codes


def test_an_outage_with_data_kept_delivers_the_open_request(ibkr_connection):
    ibkr_connection.faults.set("AAPL", connectivity_lost=1, outage_ms=300)
    with IbkrHook() as hook:
        notices = _notices(hook)
        (bar,) = fetch_day(hook, AAPL)
    assert notices == [1100, 1102]
    assert bar.session_date == SESSION
    assert ibkr_connection.request_log.outcomes("historical", symbol="AAPL") == ["bars:1"]


def test_a_request_lost_in_an_outage_is_sent_again_after_1101(ibkr_connection):
    ibkr_connection.faults.set("AAPL", connectivity_lost_data_lost=1, outage_ms=300)
    with IbkrHook() as hook:
        (bar,) = fetch_day(hook, AAPL)
        assert hook.requests_sent == 1  # one call of the hook, two sends on the wire
    assert bar.session_date == SESSION
    # Sent again on 1101, not after the request timeout (which would have raised IbkrTimeoutError).
    assert ibkr_connection.request_log.outcomes("historical", symbol="AAPL") == ["lost", "bars:1"]
    assert ibkr_connection.violations() == []


def test_requests_in_flight_on_one_connection_are_all_sent_again_after_1101(ibkr_connection):
    symbols = ("AAPL", "MSFT", "AMZN")
    ibkr_connection.faults.set("AAPL", connectivity_lost_data_lost=1, outage_ms=300)
    ibkr_connection.faults.set(None, latency_ms=100)  # all three are open when the outage starts
    specs = [ContractSpec(symbol, primary_exchange="NASDAQ") for symbol in symbols]
    end = ib_end_of_day(SESSION, "NASDAQ")

    async def in_flight(hook):
        return await asyncio.gather(*(hook.fetch_bars_async(spec, end, "1 D", "1 day") for spec in specs))

    with IbkrHook() as hook:
        answers = hook.run_async(lambda: in_flight(hook))
    assert [len(bars) for bars in answers] == [1, 1, 1]
    for symbol in symbols:
        assert ibkr_connection.request_log.outcomes("historical", symbol=symbol) == ["lost", "bars:1"]


def test_a_link_still_down_after_the_request_timeout_is_a_retryable_connection_error(impatient_connection):
    impatient_connection.faults.set("AAPL", connectivity_lost=1, outage_ms=5000)
    with IbkrHook() as hook:
        with pytest.raises(errors.IbkrTimeoutError):
            fetch_day(hook, AAPL)  # sent before the outage, held past the 1 s request timeout
        with pytest.raises(errors.IbkrConnectionError, match=r"\(1100\)") as raised:
            fetch_day(hook, BHP)  # not sent: IB said its link is down
        assert raised.value.retryable and raised.value.code == 1100
    assert impatient_connection.request_log.outcomes("historical", symbol="BHP") == []


def test_farm_notices_during_a_request_fail_nothing(ibkr_connection):
    ibkr_connection.faults.set(None, farm_notices=2)
    with IbkrHook() as hook:
        notices = _notices(hook)
        assert len(fetch_day(hook, AAPL)) == 1
        assert len(fetch_day(hook, BHP)) == 1
    assert notices == [2103, 2105, 2157, 2104, 2106, 2158, 2107] * 2
    assert ibkr_connection.request_log.outcomes("historical") == ["bars:1", "bars:1"]
