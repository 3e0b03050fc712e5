"""IB's small-bar pacing shared through PostgreSQL, and how the collect task retries or fails."""

import dataclasses
import datetime as dt
import threading

import psycopg
import pytest

from ibkr_market_data.attempt import collect_target
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.daily_plan import CollectionTarget, daily_target
from ibkr_market_data.errors import CollectionError, PermanentError
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.pacing import PacingRules, PostgresPacer
from ibkr_market_data.repository import RunContext, select_symbols
from ibkr_market_data.tasks import daily
from tests.fixtures.postgres import planned

# IB's rules compressed ~200x, in the simulator and in our pacer alike.
COMPRESSED = dict(
    small_bar_window_seconds=3.0,
    small_bar_window_limit=4,
    identical_request_seconds=1.0,
    per_contract_window_seconds=1.0,
    per_contract_limit=3,
)
RULES = PacingRules(
    window=3.0, window_limit=4, identical_gap=1.0, per_contract_window=1.0, per_contract_limit=3
)

#: Advisory locks (leased client ids) held in the test's database by any session.
ADVISORY_LOCKS_HERE = """
    SELECT COUNT(*) FROM pg_locks
    WHERE locktype = 'advisory'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def burst(simulator, monkeypatch, pacer_factory):
    """Two workers, each with its own connection, ask for 30-second bars of several half-hours."""
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", f"ibkr://{simulator.host}:{simulator.port}?client_id=20")
    errors = []

    def worker(symbol):
        spec = ContractSpec(symbol, primary_exchange="NASDAQ")
        try:
            with IbkrHook(pacer=pacer_factory()) as hook:
                for hour in (10, 11, 12, 13):
                    hook.fetch_bars(spec, f"20250115 {hour}:00:00 US/Eastern", "1800 S", "30 secs")
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in ("AAPL", "MSFT")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_shared_pacer_keeps_two_workers_within_ibs_small_bar_rules(
    tws_simulator_factory, market_db, monkeypatch
):
    simulator = tws_simulator_factory(**COMPRESSED)
    errors = burst(simulator, monkeypatch, lambda: PostgresPacer(lambda: psycopg.connect(market_db), RULES))
    assert errors == []
    assert simulator.violations() == []
    assert len(simulator.request_log.historical()) == 8
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ib_pacing_ledger").fetchone()[0] == 8


def test_without_the_pacer_the_same_burst_breaks_ibs_rules(tws_simulator_factory, market_db, monkeypatch):
    simulator = tws_simulator_factory(**COMPRESSED)
    errors = burst(simulator, monkeypatch, lambda: None)
    assert errors, "IB must refuse part of an unpaced burst"
    assert simulator.violations()


@pytest.fixture
def aapl_target(small_universe, db_conn):
    (row,) = select_symbols(db_conn, symbols=["AAPL"])
    return daily_target(row, dt.date(2025, 1, 15), dt.date(2025, 1, 15)).to_dict()


def alone(db_conn, target, run_id):
    """Return the collect task's input for a target that has a task instance of its own."""
    return planned(db_conn, run_id, target["symbol"], [target])


def test_transient_error_is_retried_and_the_retry_completes(aapl_target, db_conn, ibkr_connection):
    ibkr_connection.faults.set("AAPL", pacing_violation=1)
    with pytest.raises(CollectionError) as raised:
        daily.collect(
            alone(db_conn, aapl_target, "manual__retry"),
            RunContext("daily_market_data", "manual__retry", try_number=1),
        )
    assert raised.value.retryable
    retry = daily.collect(
        alone(db_conn, aapl_target, "manual__retry"),
        RunContext("daily_market_data", "manual__retry", try_number=2),
    )
    assert (retry["symbols"], retry["completed"]) == (1, 1)
    rows = db_conn.execute(
        "SELECT try_number, status, error_code FROM collection_logs ORDER BY try_number"
    ).fetchall()
    assert rows == [(1, "failed", 162), (2, "completed", None)]


def test_permanent_error_fails_without_retry(aapl_target, db_conn, ibkr_connection):
    ibkr_connection.faults.set("AAPL", no_permission=True)
    with pytest.raises(PermanentError, match="354"):
        daily.collect(
            alone(db_conn, aapl_target, "manual__perm"),
            RunContext("daily_market_data", "manual__perm", try_number=1),
        )
    assert db_conn.execute("SELECT status, error_code FROM collection_logs").fetchall() == [("failed", 354)]
    assert db_conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 0


class RepeatingHook(IbkrHook):
    """IB answering with every bar twice, the second copy closing at its low."""

    async def fetch_bars_async(self, *args, **kwargs):
        bars = await super().fetch_bars_async(*args, **kwargs)
        return bars + [dataclasses.replace(bar, close=bar.low) for bar in bars]


def test_a_bar_sent_twice_is_stored_once_the_last_copy_winning(aapl_target, db_conn, ibkr_connection, caplog):
    run = RunContext("daily_market_data", "manual__twice", try_number=1)
    with RepeatingHook() as hook:
        outcome = collect_target(db_conn, hook, CollectionTarget.from_dict(aapl_target), run)
    assert (outcome.status, outcome.records_collected) == ("completed", 1)
    assert db_conn.execute("SELECT close = low FROM market_data").fetchall() == [(True,)]
    assert db_conn.execute("SELECT status, records_collected FROM collection_logs").fetchall() == [
        ("completed", 1)
    ]
    assert "AAPL 2025-01-15: dropped 1 duplicate bars" in caplog.text


@pytest.fixture
def market_data_refusing_bars(db_conn):
    """Add a constraint every new bar breaks: a database error inside the write, as a full disk would be."""
    db_conn.execute("ALTER TABLE market_data ADD CONSTRAINT refuse_every_bar CHECK (volume < 0) NOT VALID")
    db_conn.commit()
    yield
    db_conn.rollback()
    db_conn.execute("ALTER TABLE market_data DROP CONSTRAINT IF EXISTS refuse_every_bar")
    db_conn.commit()


def test_a_database_error_fails_the_attempt_with_its_text_and_is_retried(
    aapl_target, db_conn, market_data_refusing_bars
):
    with pytest.raises(CollectionError) as raised:
        daily.collect(
            alone(db_conn, aapl_target, "manual__db_error"),
            RunContext("daily_market_data", "manual__db_error", try_number=1),
        )
    assert raised.value.retryable
    assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)
    [(status, message)] = db_conn.execute("SELECT status, error_message FROM collection_logs").fetchall()
    assert status == "failed" and 'violates check constraint "refuse_every_bar"' in message
    assert db_conn.execute(ADVISORY_LOCKS_HERE).fetchone()[0] == 0, "the client id lease is released"

    db_conn.execute("ALTER TABLE market_data DROP CONSTRAINT refuse_every_bar")
    db_conn.commit()
    retry = daily.collect(
        alone(db_conn, aapl_target, "manual__db_error"),
        RunContext("daily_market_data", "manual__db_error", try_number=2),
    )
    assert retry["completed"] == 1
    assert db_conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 1
