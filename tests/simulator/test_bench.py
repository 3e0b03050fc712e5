"""The raw-socket benchmark client drives the simulator and counts every answer."""

from __future__ import annotations

from ibkr_market_data_dev.simulated_ib import shipped_listings
from tws_simulator.bench import measure_throughput


def test_measure_throughput_answers_every_pipelined_request() -> None:
    result = measure_throughput(shipped_listings(), connections=3, requests_per_connection=200, in_flight=10)
    assert result["requests"] == 600 and result["errors"] == 0
    assert result["bars"] == 600 * 3  # "5 D" ending Monday 2025-06-30 12:00 UTC: 3 closed sessions each
    assert result["rule_violations"] == 0
    assert result["requests_per_second"] > 0
