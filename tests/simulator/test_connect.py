"""The real ib_insync client connects as to IB Gateway; client ids and the client cap are enforced."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_insync import IB, Stock

from tests.simulator.bar_assertions import assert_bars_equal, sessions_closing_between
from tws_simulator.pytest_plugin import SIM_NOW


@pytest.mark.parametrize("readonly", [True, False])
@pytest.mark.parametrize("client_id", [0, 17])
def test_connect_completes_the_connect_time_sync(
    tws_simulator, ib_client_factory, readonly, client_id
) -> None:
    ib = ib_client_factory(tws_simulator, client_id=client_id, readonly=readonly)
    assert ib.isConnected()
    assert ib.client.serverVersion() == 176
    assert ib.managedAccounts() == ["DU1234567"]
    assert ib.reqCurrentTime() == SIM_NOW
    assert ib.positions() == [] and ib.openTrades() == []
    ib.reqMarketDataType(3)  # no reply expected; the connection stays usable
    assert ib.reqCurrentTime() == SIM_NOW
    assert tws_simulator.connected_client_ids() == {client_id}
    assert tws_simulator.violations() == []


def test_a_client_id_in_use_gets_326_and_is_disconnected(tws_simulator, ib_client_factory) -> None:
    first = ib_client_factory(tws_simulator, client_id=5)
    errors: list[tuple[int, int, str]] = []
    second = IB()
    second.errorEvent += lambda req_id, code, message, contract: errors.append((req_id, code, message))
    with pytest.raises((TimeoutError, ConnectionError)):
        second.connect(tws_simulator.host, tws_simulator.port, clientId=5, readonly=True, timeout=1)
    second.disconnect()
    assert errors == [
        (-1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.")
    ]
    assert first.isConnected() and first.reqCurrentTime() == SIM_NOW
    assert [(v.rule, v.client_id) for v in tws_simulator.violations()] == [("duplicate_client_id", 5)]


def test_a_client_id_is_free_again_after_disconnect(tws_simulator, ib_client_factory) -> None:
    first = ib_client_factory(tws_simulator, client_id=9)
    first.disconnect()
    assert tws_simulator.request_log.wait_until(lambda _: 9 not in tws_simulator.connected_client_ids())
    again = ib_client_factory(tws_simulator, client_id=9)
    assert again.isConnected()


def test_clients_beyond_the_maximum_are_refused(tws_simulator_factory, ib_client_factory) -> None:
    simulator = tws_simulator_factory(max_clients=2)
    ib_client_factory(simulator, client_id=1)
    ib_client_factory(simulator, client_id=2)
    with pytest.raises((TimeoutError, ConnectionError)):
        ib_client_factory(simulator, client_id=3, timeout=1)
    assert [v.rule for v in simulator.violations()] == ["max_clients"]
    assert simulator.connected_client_ids() == {1, 2}


def test_thirty_two_concurrent_clients_are_served(tws_simulator, ib_client_factory) -> None:
    clients = [ib_client_factory(tws_simulator, client_id=client_id) for client_id in range(1, 33)]
    assert tws_simulator.connected_client_ids() == set(range(1, 33))
    week_start = SIM_NOW - dt.timedelta(weeks=1)
    for client_id, ib in enumerate(clients, start=1):
        contract = tws_simulator.model.contract(["AAPL", "BHP"][client_id % 2])
        stock = Stock(contract.symbol, contract.exchange, contract.currency)
        bars = ib.reqHistoricalData(stock, "", "1 W", "1 day", "TRADES", True, timeout=10)
        expected = sessions_closing_between(contract.primary_exchange, week_start, SIM_NOW)
        assert len(expected) == 5
        assert_bars_equal(bars, [tws_simulator.model.daily_bar(contract.symbol, day) for day in expected])
    served = {(r.client_id, r.outcome.startswith("bars:")) for r in tws_simulator.request_log.historical()}
    assert served == {(client_id, True) for client_id in range(1, 33)}
    assert tws_simulator.violations() == []


def test_clients_on_parallel_threads_get_exact_bars(tws_simulator) -> None:
    """Like Airflow workers: each thread runs its own ib_insync client and event loop."""
    import asyncio
    import threading

    model = tws_simulator.model
    symbols = [contract.symbol for contract in model.contracts][::20][:12]
    failures: list[BaseException] = []

    def worker(client_id: int, assigned: list[str]) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        ib = IB()
        try:
            ib.connect(tws_simulator.host, tws_simulator.port, clientId=client_id, readonly=True, timeout=10)
            for symbol in assigned:
                contract = model.contract(symbol)
                stock = Stock(contract.symbol, contract.exchange, contract.currency)
                bars = ib.reqHistoricalData(stock, "", "2 W", "1 day", "TRADES", True, timeout=10)
                expected = sessions_closing_between(
                    contract.primary_exchange, SIM_NOW - dt.timedelta(weeks=2), SIM_NOW
                )
                assert_bars_equal(bars, [model.daily_bar(symbol, day) for day in expected])
        except BaseException as exc:  # reported to the test thread
            failures.append(exc)
        finally:
            ib.disconnect()
            asyncio.get_event_loop().close()

    threads = [threading.Thread(target=worker, args=(40 + n, symbols[n::4])) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(tws_simulator.request_log.historical()) == len(symbols)
    assert {r.client_id for r in tws_simulator.request_log.historical()} == {40, 41, 42, 43}
    assert tws_simulator.violations() == []
