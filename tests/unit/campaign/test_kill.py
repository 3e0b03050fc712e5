"""A kill the campaign makes cuts the IB requests its processes hold open, and leaves no task runner alive.

Real processes and the real simulator; see docs/fault-campaign.md#what-is-checked.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from campaign import observe
from campaign.run import Campaign
from ibkr_market_data_dev.airflow_stack import kill_tree

#: A client asking for daily bars again and again, each answer taking the campaign's latency.
CLIENT = """
import sys
from ib_insync import IB, Stock
ib = IB()
ib.connect("127.0.0.1", int(sys.argv[1]), clientId=7, readonly=True, timeout=10)
contract = Stock(sys.argv[2], sys.argv[3], sys.argv[4])
while True:
    ib.reqHistoricalData(contract, "", "1 W", "1 day", "TRADES", True, timeout=30)
"""

#: A process whose child leads a process group of its own, as Airflow's task runners do.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def campaign() -> Iterator[Campaign]:
    found = Campaign(symbols=4, latency_ms=1000, request_timeout=10)
    try:
        yield found
    finally:
        found.simulator.stop()


def _client(campaign: Campaign) -> subprocess.Popen[bytes]:
    symbol = next(s.symbol for s in campaign.universe if s.primary_exchange != "ASX")
    contract = campaign.simulator.model.contract(symbol)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENT,
            str(campaign.port),
            contract.symbol,
            contract.exchange,
            contract.currency,
        ]
    )


def _await(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_kill_while_the_answer_falls_due_still_cuts_the_open_request(campaign: Campaign) -> None:
    client = _client(campaign)
    try:
        _await(lambda: campaign._requests_open([client.pid]))

        def slow_kill() -> None:
            # A loaded machine: the kill comes after the answer fell due.
            [record] = campaign._requests_open([client.pid])
            due = record.received_at + dt.timedelta(milliseconds=campaign.latency_ms + 200)
            _await(lambda: dt.datetime.now(dt.UTC) >= due)
            client.kill()

        held = campaign._await_kill_holding(lambda: [client.pid], slow_kill)
        assert len(held) == 1
        assert campaign._abandoned(held) == 1
    finally:
        client.kill()
        client.wait()


def test_the_process_tree_and_its_kill_reach_a_child_in_a_group_of_its_own() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, start_new_session=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert os.getpgid(child) != parent.pid
        assert set(observe.process_tree(parent.pid)) == {parent.pid, child}
        assert set(kill_tree(parent.pid)) == {parent.pid, child}
        parent.wait(timeout=10)
        _await(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE)
    finally:
        for pid in (parent.pid, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.wait()
