"""Loading symbols rides out a gateway outage as collection does: a passing failure aborts nothing.

The gateway is the simulator, stopped and started again on the same port, as IB Gateway's nightly restart.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from ibkr_market_data import repository, symbols
from ibkr_market_data.errors import IbkrConnectionError
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.universe import load_universe

NAMES = ("BHP", "CBA", "AAPL", "MSFT", "SPY", "SQQQ")


@pytest.fixture
def universe():
    return [entry for entry in load_universe() if entry.symbol in NAMES]


@pytest.fixture
def gateway(tws_simulator_factory, monkeypatch):
    """Return a simulator and a function restarting it on its port ``seconds`` from now."""
    simulator = tws_simulator_factory(faults={"*": {"latency_ms": 1000}})
    port = simulator.port
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://127.0.0.1:{port}?client_id=10&connect_timeout=2&request_timeout=5",
    )
    monkeypatch.setattr(symbols, "RESOLVE_BACKOFF_SECONDS", (0.2, 0.5, 1.0))
    timers: list[threading.Timer] = []

    def restart_in(seconds: float) -> None:
        timer = threading.Timer(seconds, lambda: tws_simulator_factory(port=port))
        timer.start()
        timers.append(timer)

    yield simulator, restart_in
    for timer in timers:
        timer.join()


def load(market_db, universe) -> symbols.ResolutionReport:
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        return symbols.load_symbols(conn, hook, universe)


def test_a_gateway_restart_during_a_load_ends_with_every_symbol_resolved(market_db, universe, gateway):
    simulator, restart_in = gateway
    stop = threading.Timer(1.5, simulator.stop)  # a symbol in, the next one cut mid-answer
    stop.start()
    restart_in(4.0)
    report = load(market_db, universe)
    stop.join()

    before_restart = simulator.request_log.contract_details()
    assert 0 < len([r for r in before_restart if r.outcome == "details:1"]) < len(NAMES), "cut mid-load"
    assert before_restart[-1].outcome == "abandoned", "one request was cut mid-answer"
    assert sorted(report.resolved) == sorted(NAMES)
    assert (report.unresolved, report.pending) == ({}, {})


def test_a_gateway_down_past_the_outage_limit_leaves_symbols_to_the_next_load_and_aborts_nothing(
    market_db, universe, gateway, monkeypatch
):
    simulator, restart_in = gateway
    monkeypatch.setattr(symbols, "RESOLVE_OUTAGE_SECONDS", 1.5)
    stop = threading.Timer(1.5, simulator.stop)  # a symbol in, and not back within the limit
    stop.start()
    report = load(market_db, universe)
    stop.join()

    assert report.resolved and report.unresolved == {}
    assert sorted(report.resolved + list(report.pending)) == sorted(NAMES)
    assert all(
        "Could not connect" in reason or "Connection lost" in reason for reason in report.pending.values()
    )
    with psycopg.connect(market_db) as conn:
        assert repository.has_unanswered_symbols(conn), "no reason recorded: IB never answered for them"

    restart_in(0)
    again = load(market_db, universe)
    assert sorted(again.resolved) == sorted(report.pending) and again.pending == {}
    with psycopg.connect(market_db) as conn:
        assert not repository.has_unanswered_symbols(conn)


def test_a_gateway_never_reached_is_the_loads_failure_once_the_outage_limit_passed(
    market_db, universe, gateway, monkeypatch
):
    simulator, _ = gateway
    monkeypatch.setattr(symbols, "RESOLVE_OUTAGE_SECONDS", 1.5)
    simulator.stop()
    with pytest.raises(IbkrConnectionError, match="Could not connect"):
        load(market_db, universe)
