"""Run metrics: requests, bars, latency p50/p95, retries and wall time per exchange, from a run's attempts."""

from __future__ import annotations

import datetime as dt

import pytest

from ibkr_market_data import repository
from tests.integration.operations.conftest import D14, clear_operations_tables, insert_attempt, insert_symbols

RUN = "manual__metrics"
T0 = dt.datetime(2025, 1, 14, 22, 0)


@pytest.fixture
def run_attempts(db_conn):
    """Record AAPL 0.1 s; MSFT failing after 0.5 s, its retry 0.3 s; BHP 0.2 s; SPY skipped (no request)."""
    clear_operations_tables(db_conn)
    ids = insert_symbols(db_conn)

    def attempt(symbol, status, seconds, offset, try_number=1, records=1):
        insert_attempt(
            db_conn, ids[symbol], D14, status, run_id=RUN, try_number=try_number, request_seconds=seconds,
            records=records, started_at=T0 + dt.timedelta(seconds=offset), seconds=1.0,
        )  # fmt: skip

    attempt("AAPL", "completed", 0.1, 0)
    attempt("MSFT", "failed", 0.5, 1, records=0)
    attempt("MSFT", "completed", 0.3, 5, try_number=2)
    attempt("BHP", "completed", 0.2, 2)
    attempt("SPY", "skipped", None, 0, records=0)
    db_conn.commit()
    return ids


def test_run_metrics_per_exchange_and_for_the_whole_run(run_attempts, db_conn):
    rows = {row["exchange"]: row for row in repository.record_run_metrics(db_conn, "daily_market_data", RUN)}
    db_conn.commit()
    assert set(rows) == {"ALL", "NASDAQ", "ASX", "ARCA"}
    whole = rows["ALL"]
    assert (whole["symbols"], whole["attempts"], whole["requests"], whole["bars"], whole["retries"]) == (
        4,
        4,
        4,
        3,
        1,
    )
    assert (whole["completed"], whole["failed"], whole["no_data"], whole["skipped"]) == (3, 0, 0, 1)
    assert whole["latency_p50"] == pytest.approx(0.25)
    assert whole["latency_p95"] == pytest.approx(0.47)  # 0.3 + 0.85 * (0.5 - 0.3), interpolated
    assert whole["wall_seconds"] == pytest.approx(6.0)  # first start T0, last finish T0 + 6 s
    nasdaq = rows["NASDAQ"]
    assert (nasdaq["symbols"], nasdaq["requests"], nasdaq["bars"], nasdaq["retries"]) == (2, 3, 2, 1)
    assert nasdaq["latency_p50"] == pytest.approx(0.3)
    assert rows["ARCA"]["requests"] == 0 and rows["ARCA"]["latency_p50"] is None


def test_recording_twice_changes_nothing(run_attempts, db_conn):
    first = repository.record_run_metrics(db_conn, "daily_market_data", RUN)
    second = repository.record_run_metrics(db_conn, "daily_market_data", RUN)
    db_conn.commit()
    strip = [{k: v for k, v in row.items() if k != "recorded_at"} for row in first]
    assert sorted(strip, key=str) == sorted(
        ({k: v for k, v in row.items() if k != "recorded_at"} for row in second), key=str
    )
    stored = repository.run_metrics(db_conn, dt.date(2025, 1, 14), dt.date(2025, 1, 14))
    assert len(stored) == 4 and stored[0]["exchange"] == "ALL"
    assert repository.run_metrics(db_conn, dt.date(2025, 1, 15), dt.date(2025, 1, 16)) == []


def test_a_run_without_attempts_records_nothing(run_attempts, db_conn):
    assert repository.record_run_metrics(db_conn, "daily_market_data", "manual__never") == []
