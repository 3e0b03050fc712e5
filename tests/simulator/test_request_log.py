"""The request log records every request with its client, parameters, time and outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time

import pytest
from ib_insync import Stock

from tests.simulator.waiting import run_until
from tws_simulator.request_log import RequestLog, RequestRecord


def test_every_request_is_recorded_with_its_outcome(tws_simulator, ib_client_factory) -> None:
    first = ib_client_factory(tws_simulator, client_id=11)
    second = ib_client_factory(tws_simulator, client_id=12)
    before = dt.datetime.now(dt.UTC)
    aapl = Stock("AAPL", "SMART", "USD")
    first.reqContractDetails(aapl)
    first.reqHistoricalData(aapl, "20250627 23:59:59 US/Eastern", "1 W", "1 day", "TRADES", True)
    second.reqHistoricalData(
        Stock("BHP", "ASX", "AUD"), "20250127 23:59:59 Australia/Sydney", "1 D", "1 day", "TRADES", True
    )
    second.reqHeadTimeStamp(Stock("GYG", "ASX", "AUD"), "TRADES", False)

    log = tws_simulator.request_log
    assert len(log) == 4
    [details] = log.contract_details()
    assert (details.client_id, details.symbol, details.outcome) == (11, "AAPL", "details:1")
    [bars] = log.historical(client_id=11)
    assert (bars.symbol, bars.bar_size, bars.duration, bars.what_to_show, bars.use_rth) == (
        "AAPL",
        "1 day",
        "1 W",
        "TRADES",
        True,
    )
    assert bars.end_date_time == "20250627 23:59:59 US/Eastern"
    assert bars.outcome == "bars:5" and bars.bar_count == 5 and bars.error_code is None
    assert before <= bars.received_at <= bars.answered_at
    [holiday] = log.historical(symbol="BHP")
    assert (holiday.client_id, holiday.outcome, holiday.error_code) == (12, "error:162", 162)
    assert "HMDS query returned no data" in holiday.error_message and holiday.bar_count is None
    [head] = log.head_timestamps()
    assert (head.symbol, head.use_rth, head.outcome) == ("GYG", False, "timestamp")
    assert log.outcomes("historical") == ["bars:5", "error:162"]
    assert tws_simulator.violations() == []


def test_queries_return_copies_and_only_a_pending_record_changes() -> None:
    log = RequestLog()
    record = log.add(RequestRecord(client_id=1, req_id=7, kind="historical", symbol="AAPL", con_id=0))
    log.records()[0].outcome = "tampered"
    assert log.outcomes() == ["pending"]
    log.finish(record, "bars:3")
    log.finish(record, "cancelled")
    assert log.outcomes() == ["bars:3"]
    assert log.wait_until(lambda current: current.outcomes() == ["bars:3"], timeout=0.1)
    assert not log.wait_until(lambda current: len(current) == 2, timeout=0.05)


def test_notices_are_logged_per_client_and_records_carry_the_clients_port(
    tws_simulator, ib_client_factory
) -> None:
    from ib_insync import IB

    tws_simulator.faults.set("AAPL", connectivity_lost=1, outage_ms=200)
    ib = ib_client_factory(tws_simulator, client_id=21)
    ib.reqHistoricalData(
        Stock("AAPL", "SMART", "USD"), "20250627 23:59:59 US/Eastern", "1 W", "1 day", "TRADES", True
    )
    log = tws_simulator.request_log
    assert [(notice.client_id, notice.code) for notice in log.notices()] == [(21, 1100), (21, 1102)]
    [record] = log.historical(symbol="AAPL")
    assert record.client_port == ib.client.conn.transport.get_extra_info("sockname")[1]

    refused = IB()
    with pytest.raises(Exception):  # noqa: B017, PT011 (ib_insync raises its own on a refused id)
        refused.connect(tws_simulator.host, tws_simulator.port, clientId=21, timeout=5)
    refused.disconnect()
    assert [(notice.client_id, notice.code) for notice in log.notices(326)] == [(21, 326)]
    log.clear()
    assert log.notices() == []


def _peer_closed(connection) -> bool:
    """Return whether the kernel holds the client's end of ``connection``'s socket (EOF to read)."""
    raw = connection._transport.get_extra_info("socket")
    with socket.fromfd(raw.fileno(), raw.family, raw.type) as sock:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True


def test_a_request_whose_client_vanished_before_its_answer_fell_due_is_abandoned(
    tws_simulator, ib_client_factory
) -> None:
    # The loop reads the client's end and fires the due answer in one turn: the answer must not count.
    tws_simulator.faults.set(None, latency_ms=1000)
    ib = ib_client_factory(tws_simulator)
    contract = Stock("AAPL", "SMART", "USD")
    asyncio.ensure_future(
        ib.reqHistoricalDataAsync(contract, "20250627 23:59:59 US/Eastern", "1 W", "1 day", "TRADES", True)
    )
    log = tws_simulator.request_log
    run_until(ib, lambda: log.historical(outcome="pending"))
    [connection] = tws_simulator.simulator.connections
    [pending] = connection._open.values()
    due = pending.timer.when()
    with tws_simulator.paused():
        ib.disconnect()
        deadline = time.monotonic() + 5
        while not (_peer_closed(connection) and time.monotonic() >= due):
            assert time.monotonic() < deadline, "the client's socket did not close"
            time.sleep(0.01)
    assert log.wait_until(lambda _: log.outcomes("historical") != ["pending"])
    assert log.outcomes("historical") == ["abandoned"]
