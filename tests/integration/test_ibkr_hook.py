"""The IBKR hook against the TWS simulator: real ib_insync client, real socket."""

import datetime as dt

import psycopg
import pytest

from ibkr_market_data import errors
from ibkr_market_data.bars import InvalidBarError
from ibkr_market_data.client_ids import PostgresClientIdLease
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.ib_client import IB
from ibkr_market_data.planning import ib_end_of_day

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
        ({"pacing_violation": True}, errors.IbkrPacingViolation, 162),
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
        with IbkrHook(client_id_lease=lease) as hook:
            hook.get_conn()
            assert hook.client_id == 11
            assert ibkr_connection.connected_client_ids() == {10, 11}
        assert lease.released == [10, 11]
    finally:
        squatter.disconnect()


def test_postgres_leases_never_share_an_id(ibkr_connection, market_db):
    connect = lambda: psycopg.connect(market_db, autocommit=True)  # noqa: E731
    with connect() as first, connect() as second, connect() as other_worker:
        hooks = [
            IbkrHook(client_id_lease=PostgresClientIdLease(first, 10, 2)),
            IbkrHook(client_id_lease=PostgresClientIdLease(second, 10, 2)),
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
