"""Farm outages and connect-time behaviour through the real client: HMDS broken, notices, slow sync."""

from __future__ import annotations

import asyncio
import time

import pytest
from ib_insync import IB, RequestError, Stock

from tests.simulator.waiting import run_until
from tws_simulator.faults import UnknownFault

END = "20250627 23:59:59 US/Eastern"


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


def notices(ib: IB) -> list[tuple[int, int]]:
    """(reqId, code) of every error and notice the client gets, in order, from now on."""
    seen: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, message, contract: seen.append((req_id, code))
    return seen


def latency(record) -> float:
    return (record.answered_at - record.received_at).total_seconds()


def test_a_broken_hmds_farm_stalls_every_historical_answer_until_2106(
    tws_simulator, ib_client_factory
) -> None:
    tws_simulator.faults.set("AAPL", hmds_farm_stall=1, outage_ms=600)
    ib, bystander = ib_client_factory(tws_simulator), ib_client_factory(tws_simulator, client_id=2)
    seen, bystander_seen = notices(ib), notices(bystander)
    aapl, msft = stock(tws_simulator, "AAPL"), stock(tws_simulator, "MSFT")

    async def both():
        first = asyncio.ensure_future(ib.reqHistoricalDataAsync(aapl, END, "1 W", "1 day", "TRADES", True))
        await asyncio.wait_for(bystander.errorEvent, 5)  # 2105: AAPL's request broke the farm
        second = await bystander.reqHistoricalDataAsync(msft, END, "1 W", "1 day", "TRADES", True)
        return await first, second

    started = time.monotonic()
    aapl_bars, msft_bars = ib.run(both())
    assert len(aapl_bars) == 5 and len(msft_bars) == 5 and time.monotonic() - started >= 0.6
    assert seen == [(-1, 2105), (-1, 2106)]
    assert bystander_seen == [(-1, 2105), (-1, 2106)]
    [msft_record] = tws_simulator.request_log.historical(symbol="MSFT")
    assert latency(msft_record) >= 0.3, "a symbol without the fault waits for the farm too"
    started = time.monotonic()
    assert len(ib.reqHistoricalData(aapl, END, "1 W", "1 day", "TRADES", True)) == 5
    assert time.monotonic() - started < 0.6 and len(seen) == 2, "a count of 1: one outage"
    assert tws_simulator.violations() == []


@pytest.mark.parametrize("connect_notices", [False, True])
def test_a_client_connecting_while_the_hmds_farm_is_broken_is_told_so_at_connect(
    tws_simulator, ib_client_factory, connect_notices
) -> None:
    tws_simulator.faults.set(None, connect_notices=connect_notices)
    tws_simulator.faults.set("AAPL", hmds_farm_stall=1, outage_ms=600)
    ib = ib_client_factory(tws_simulator)
    latecomer = IB()
    late_seen = notices(latecomer)

    async def connect_during_the_outage():
        answer = asyncio.ensure_future(
            ib.reqHistoricalDataAsync(stock(tws_simulator, "AAPL"), END, "1 W", "1 day", "TRADES", True)
        )
        await asyncio.wait_for(ib.errorEvent, 5)  # 2105: the farm is broken
        await latecomer.connectAsync(
            tws_simulator.host, tws_simulator.port, clientId=3, readonly=True, timeout=5
        )
        return await answer

    try:
        assert len(ib.run(connect_during_the_outage())) == 5
        run_until(latecomer, lambda: (-1, 2106) in late_seen)
    finally:
        latecomer.disconnect()
    at_connect = [(-1, 2104), (-1, 2158)] if connect_notices else []
    assert late_seen == [*at_connect, (-1, 2105), (-1, 2106)], "broken at connect, then OK: never OK first"


def test_a_farm_that_breaks_on_every_request_still_answers_each_after_its_outage(
    tws_simulator, ib_client_factory
) -> None:
    tws_simulator.faults.set("AAPL", hmds_farm_stall=True, outage_ms=200)
    ib = ib_client_factory(tws_simulator)
    seen = notices(ib)
    for outages in (1, 2):
        assert (
            len(ib.reqHistoricalData(stock(tws_simulator, "AAPL"), END, "1 W", "1 day", "TRADES", True)) == 5
        )
        assert seen == outages * [(-1, 2105), (-1, 2106)]


def test_a_broken_hmds_farm_can_fail_historical_requests_with_162(tws_simulator, ib_client_factory) -> None:
    tws_simulator.faults.set("AAPL", hmds_farm_fail=1, outage_ms=400)
    ib = ib_client_factory(tws_simulator)
    ib.RaiseRequestErrors = True
    seen = notices(ib)
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(stock(tws_simulator, "AAPL"), END, "1 W", "1 day", "TRADES", True)
    assert raised.value.code == 162 and "HMDS data farm connection is broken" in raised.value.message
    with pytest.raises(RequestError) as during:
        ib.reqHistoricalData(stock(tws_simulator, "MSFT"), END, "1 W", "1 day", "TRADES", True)
    assert during.value.code == 162 and "HMDS data farm connection is broken" in during.value.message
    [details] = ib.reqContractDetails(stock(tws_simulator, "MSFT"))  # the sec-def farm is up
    assert details.contract.symbol == "MSFT"
    run_until(ib, lambda: (-1, 2106) in seen)
    assert [code for _, code in seen] == [2105, 162, 162, 2106]
    assert len(ib.reqHistoricalData(stock(tws_simulator, "MSFT"), END, "1 W", "1 day", "TRADES", True)) == 5
    assert tws_simulator.request_log.outcomes("historical") == ["error:162", "error:162", "bars:5"]
    assert tws_simulator.simulator.rules.open_requests == 0


def test_connect_time_farm_notices_arrive_after_the_handshake(tws_simulator_factory) -> None:
    simulator = tws_simulator_factory(faults={"*": {"connect_notices": True}})
    ib = IB()
    seen = notices(ib)
    try:
        ib.connect(simulator.host, simulator.port, clientId=1, readonly=True, timeout=10)
        run_until(ib, lambda: len(seen) == 3)
        assert seen == [(-1, 2104), (-1, 2106), (-1, 2158)]
        assert len(ib.reqHistoricalData(stock(simulator, "AAPL"), END, "1 W", "1 day", "TRADES", True)) == 5
    finally:
        ib.disconnect()
    with pytest.raises(UnknownFault, match='set it under "\\*"'):
        simulator.faults.set("AAPL", connect_notices=True)


def test_a_slow_account_sync_delays_connect_and_fails_an_impatient_one(tws_simulator_factory) -> None:
    simulator = tws_simulator_factory(faults={"*": {"account_sync_ms": 700}})
    patient, impatient = IB(), IB()
    try:
        started = time.monotonic()
        patient.connect(simulator.host, simulator.port, clientId=1, readonly=True, timeout=10)
        assert time.monotonic() - started >= 0.7
        assert patient.isConnected() and patient.reqCurrentTime()
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            impatient.connect(simulator.host, simulator.port, clientId=2, readonly=True, timeout=0.3)
        assert not impatient.isConnected()
    finally:
        patient.disconnect()
        impatient.disconnect()
    simulator.faults.clear(None, "account_sync_ms")
    quick = IB()
    try:
        started = time.monotonic()
        quick.connect(simulator.host, simulator.port, clientId=3, readonly=True, timeout=10)
        assert time.monotonic() - started < 0.7, "only a connection made while the sync is slow waits"
    finally:
        quick.disconnect()
