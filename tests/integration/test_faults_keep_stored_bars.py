"""Each IB fault against a collect task whose symbols already have good bars.

Those bars stay exactly as they were, and the fault's session arrives by the task's own retries.
"""

import datetime as dt

import psycopg
import pytest

from ibkr_market_data.daily_plan import daily_target
from ibkr_market_data.errors import CollectionError, PermanentError
from ibkr_market_data.repository import RunContext, select_symbols
from ibkr_market_data.tasks import daily
from ibkr_market_data_dev.simulated_ib import stored_bar
from tests.fixtures.postgres import planned

SYMBOLS = ["AAPL", "MSFT"]
GOOD_FIRST, GOOD_LAST = dt.date(2025, 1, 13), dt.date(2025, 1, 14)
FAULT_DAY = dt.date(2025, 1, 15)

ALL_ROWS = """
    SELECT s.symbol, md.timeframe, md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap,
           md.bar_count, md.id, md.created_at, md.updated_at
    FROM market_data md JOIN symbols s ON s.id = md.symbol_id ORDER BY 1, 2, 3
"""


def group(db_conn, first: dt.date, last: dt.date, run_id: str) -> dict:
    """Return the collect task's input for AAPL and MSFT as one group (several requests in flight)."""
    rows = select_symbols(db_conn, symbols=SYMBOLS)
    targets = [daily_target(row, first, last).to_dict() for row in rows]
    return planned(db_conn, run_id, "AAPL…MSFT (2)", targets)


def collect_with_retries(task_input: dict, run_id: str, tries: int = 4) -> int:
    """Run the collect task as Airflow would retry it; the try that completed."""
    for try_number in range(1, tries + 1):
        try:
            daily.collect(task_input, RunContext("daily_market_data", run_id, try_number=try_number))
        except CollectionError as failed:
            assert failed.retryable, failed
            continue
        return try_number
    raise AssertionError(f"not completed in {tries} tries")


@pytest.fixture
def impatient(ibkr_connection, monkeypatch):
    """Make requests give up after 1 s (a never-answered request is cancelled and retried)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{ibkr_connection.host}:{ibkr_connection.port}?client_id=10&request_timeout=1",
    )
    return ibkr_connection


@pytest.mark.parametrize(
    "fault",
    [
        {"drop_connection": 1},
        {"never_answer": 1},
        {"pacing_violation": 2},
        {"open_requests_refused": 1},
        {"connectivity_lost": 1, "outage_ms": 300},
        {"connectivity_lost_data_lost": 1, "outage_ms": 300},
        {"farm_notices": True},
    ],
    ids=lambda fault: next(iter(fault)),
)
def test_a_fault_leaves_stored_bars_untouched_and_its_session_arrives(
    small_universe, db_conn, market_db, impatient, fault
):
    collect_with_retries(group(db_conn, GOOD_FIRST, GOOD_LAST, "manual__good"), "manual__good")
    with psycopg.connect(market_db) as conn:
        good = conn.execute(ALL_ROWS).fetchall()
    assert len(good) == 2 * len(SYMBOLS)

    impatient.faults.set(None, **fault)
    collect_with_retries(group(db_conn, FAULT_DAY, FAULT_DAY, "manual__fault"), "manual__fault")

    with psycopg.connect(market_db) as conn:
        now = conn.execute(ALL_ROWS).fetchall()
        revisions = conn.execute("SELECT COUNT(*) FROM bar_revisions").fetchone()[0]
    assert [row for row in now if row[2].date() != FAULT_DAY] == good, "good bars untouched"
    arrived = {row[0]: row[3:10] for row in now if row[2].date() == FAULT_DAY}
    for symbol in SYMBOLS:
        bar = stored_bar(impatient.model.daily_bar(symbol, FAULT_DAY))
        assert arrived[symbol] == (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.bar_count)
    assert revisions == 0
    assert impatient.violations() == []


def test_corrupt_bars_fail_for_good_and_touch_nothing_stored(small_universe, db_conn, market_db, impatient):
    collect_with_retries(group(db_conn, GOOD_FIRST, GOOD_LAST, "manual__good"), "manual__good")
    with psycopg.connect(market_db) as conn:
        good = conn.execute(ALL_ROWS).fetchall()

    impatient.faults.set(None, corrupt_bars=True)
    with pytest.raises(PermanentError, match="AAPL"):
        daily.collect(
            group(db_conn, FAULT_DAY, FAULT_DAY, "manual__bad"),
            RunContext("daily_market_data", "manual__bad"),
        )

    with psycopg.connect(market_db) as conn:
        assert conn.execute(ALL_ROWS).fetchall() == good
