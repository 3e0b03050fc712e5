"""IB's limits, enforced on the real client: pacing of small bars, 50 open requests, violations.

Most tests drive the pacing windows with a :class:`ManualMonotonic` clock, so IB's real numbers
(15 s, 2 s, 60 per 10 minutes) are tested without waiting; one test compresses a window to a
second of real time.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ib_insync import RequestError, Stock

from tests.simulator.waiting import run_until
from tws_simulator.testing import ManualMonotonic

END = "20250627 16:00:00 US/Eastern"


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


def small(ib, simulator, symbol: str = "AAPL", duration: str = "1800 S", what: str = "TRADES"):
    return ib.reqHistoricalData(stock(simulator, symbol), END, duration, "30 secs", what, True)


def refused(ib, simulator, symbol: str = "AAPL", duration: str = "1800 S", what: str = "TRADES") -> int:
    with pytest.raises(RequestError) as raised:
        small(ib, simulator, symbol, duration, what)
    assert "pacing violation" in raised.value.message
    return raised.value.code


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def paced(tws_simulator_factory, ib_client_factory, clock):
    def start(**overrides):
        simulator = tws_simulator_factory(monotonic=clock, **overrides)
        ib = ib_client_factory(simulator)
        ib.RaiseRequestErrors = True
        return simulator, ib

    return start


def test_identical_small_bar_request_within_15_seconds(paced, clock) -> None:
    simulator, ib = paced()
    assert len(small(ib, simulator)) == 60
    clock.advance(14.9)
    assert refused(ib, simulator) == 162
    clock.advance(0.1)
    assert len(small(ib, simulator)) == 60
    assert [(v.rule, v.client_id) for v in simulator.violations()] == [("pacing_identical_request", 1)]


def test_six_requests_for_one_contract_within_2_seconds(paced, clock) -> None:
    simulator, ib = paced()
    for seconds in (600, 900, 1200, 1500, 1800):
        small(ib, simulator, duration=f"{seconds} S")
        clock.advance(0.3)
    assert refused(ib, simulator, duration="2100 S") == 162
    assert len(small(ib, simulator, symbol="MSFT")) == 60  # another contract is fine
    clock.advance(0.9)  # the first request is now 2 s old
    assert len(small(ib, simulator, duration="2400 S")) == 80
    assert [v.rule for v in simulator.violations()] == ["pacing_per_contract"]


def test_sixty_small_bar_requests_per_ten_minutes(paced, clock) -> None:
    simulator, ib = paced()
    symbols = [
        contract.symbol for contract in simulator.model.contracts if contract.primary_exchange != "ASX"
    ][:61]
    for symbol in symbols[:60]:
        small(ib, simulator, symbol=symbol)
        clock.advance(1)
    assert refused(ib, simulator, symbol=symbols[60]) == 162
    clock.advance(600 - 60)  # the first request leaves the window
    assert len(small(ib, simulator, symbol=symbols[60])) == 60
    assert [v.rule for v in simulator.violations()] == ["pacing_small_bar_window"]


def test_bid_ask_counts_twice(paced) -> None:
    simulator, ib = paced(small_bar_window_limit=3)
    small(ib, simulator, symbol="AAPL")
    small(ib, simulator, symbol="MSFT", what="BID_ASK")
    assert refused(ib, simulator, symbol="NVDA") == 162


def test_head_timestamp_follows_the_small_bar_rules(paced, clock) -> None:
    simulator, ib = paced()
    ib.reqHeadTimeStamp(stock(simulator, "AAPL"), "TRADES", True)
    with pytest.raises(RequestError, match="pacing violation"):
        ib.reqHeadTimeStamp(stock(simulator, "AAPL"), "TRADES", True)
    assert [v.rule for v in simulator.violations()] == ["pacing_identical_request"]


def test_daily_bars_are_not_paced(paced) -> None:
    simulator, ib = paced()
    for _ in range(10):
        ib.reqHistoricalData(stock(simulator, "AAPL"), END, "1 W", "1 day", "TRADES", True)
    assert simulator.violations() == []


def test_a_compressed_window_in_real_time(tws_simulator_factory, ib_client_factory) -> None:
    simulator = tws_simulator_factory(small_bar_window_seconds=1.0, small_bar_window_limit=3)
    ib = ib_client_factory(simulator)
    ib.RaiseRequestErrors = True
    first = time.monotonic()
    for symbol in ("AAPL", "MSFT", "NVDA"):
        small(ib, simulator, symbol=symbol)
    assert refused(ib, simulator, symbol="AMZN") == 162
    ib.sleep(max(0.0, first + 1.0 - time.monotonic()))  # what a paced client does: wait out the window
    assert len(small(ib, simulator, symbol="AMZN")) == 60


def test_the_51st_open_request_gets_322(tws_simulator, ib_client_factory) -> None:
    tws_simulator.faults.set(None, never_answer=True)
    ib = ib_client_factory(tws_simulator)
    contract = stock(tws_simulator, "AAPL")
    pending = [
        asyncio.ensure_future(
            ib.reqHistoricalDataAsync(contract, END, "1 W", "1 day", "TRADES", True, timeout=0)
        )
        for _ in range(50)
    ]
    log = tws_simulator.request_log
    run_until(ib, lambda: len(log.historical(outcome="pending")) == 50, timeout=10)
    assert tws_simulator.simulator.rules.open_requests == 50
    ib.RaiseRequestErrors = True
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(contract, END, "1 W", "1 day", "TRADES", True)
    assert raised.value.code == 322
    assert "Only 50 simultaneous API historical data requests allowed." in raised.value.message
    assert [v.rule for v in tws_simulator.violations()] == ["max_open_requests"]
    for request in pending:
        request.cancel()
    ib.run(asyncio.gather(*pending, return_exceptions=True))
    ib.disconnect()  # the open requests die with the connection
    assert log.wait_until(lambda _: len(log.historical(outcome="abandoned")) == 50)
    assert tws_simulator.simulator.rules.open_requests == 0
