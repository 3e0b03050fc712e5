"""Bookkeeping that is never wrong: no-data by session, exact revisions and counts, settled coverage.

Against a real PostgreSQL (two real connections for concurrent writers) and, for the coverage
test, the daily DAG through dag.test() and the TWS simulator. See docs/schema.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from decimal import Decimal

import psycopg
import pytest

from ibkr_market_data import calendars, coverage, repository
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext, UpsertResult
from ibkr_market_data.universe import load_universe

DAILY_RUN = RunContext("daily_market_data", "scheduled__daily")
BACKFILL_RUN = RunContext("backfill_market_data", "manual__backfill")
#: An ASX session and the one before it; the session opens at 10:00 Sydney, 23:00 UTC the day before.
ASX_SESSION, ASX_PREVIOUS = dt.date(2025, 1, 15), dt.date(2025, 1, 14)


@pytest.fixture
def symbol_ids(db_conn: psycopg.Connection) -> dict[str, int]:
    """Load AAPL (NASDAQ) and BHP (ASX) as active symbols; return their ids."""
    repository.upsert_universe(db_conn, [s for s in load_universe() if s.symbol in ("AAPL", "BHP")])
    db_conn.execute("UPDATE symbols SET active = TRUE, con_id = id")
    db_conn.commit()
    return {row.symbol: row.id for row in repository.select_symbols(db_conn)}


def bar(timestamp: dt.datetime, close: str = "100.5", volume: int = 1000) -> Bar:
    return Bar(timestamp, Decimal("100"), Decimal("101"), Decimal("99"), Decimal(close), volume, None, 7)


def asx_session_bars(minutes: int) -> list[Bar]:
    """Return bars of ``minutes`` each for ASX_SESSION, 10:00-16:00 Sydney, as naive UTC."""
    opens = calendars.session_open("ASX", ASX_SESSION).astimezone(dt.UTC).replace(tzinfo=None)
    return [bar(opens + dt.timedelta(minutes=minutes * i)) for i in range(6 * 60 // minutes)]


def no_data_sessions(conn: psycopg.Connection) -> set[dt.date]:
    return {row[0] for row in conn.execute("SELECT session FROM no_data_sessions").fetchall()}


@pytest.mark.parametrize(
    ("timeframe", "minutes", "writer", "time_zone"),
    [
        ("1hour", 60, "upsert", ""),  # a statement of arrays; the zone read from the symbol's exchange
        ("1hour", 60, "upsert", "Australia/Sydney"),  # the zone given, as a collect task does
        ("5min", 5, "upsert", ""),  # COPY: more than ARRAY_UPSERT_MAX_BARS
        ("1hour", 60, "backfill", ""),
    ],
)
def test_asx_intraday_bars_forget_only_their_own_sessions_no_data_record(
    db_conn, symbol_ids, timeframe, minutes, writer, time_zone
):
    bhp = symbol_ids["BHP"]
    bars = asx_session_bars(minutes)
    assert bars[0].timestamp.date() == ASX_PREVIOUS, "the session's first bar falls on the UTC day before"
    assert len(bars) > repository.ARRAY_UPSERT_MAX_BARS or minutes == 60
    repository.record_no_data_sessions(db_conn, bhp, timeframe, [ASX_PREVIOUS, ASX_SESSION], "x", DAILY_RUN)
    db_conn.commit()

    if writer == "upsert":
        repository.upsert_bars(db_conn, bhp, timeframe, bars, DAILY_RUN, time_zone)
    else:
        repository.store_backfilled_bars(db_conn, bhp, timeframe, bars, BACKFILL_RUN, time_zone)
    db_conn.commit()

    assert no_data_sessions(db_conn) == {ASX_PREVIOUS}, "the previous session has no bar: it keeps its record"


def waiting_on_a_lock(watcher: psycopg.Connection, pid: int, done: threading.Event) -> bool:
    """Wait until backend ``pid`` waits on a lock (True), or ``done`` is set first (False).

    ``watcher`` must be in autocommit mode: a transaction reads ``pg_stat_activity`` once.
    """
    deadline = dt.datetime.now() + dt.timedelta(seconds=20)
    while dt.datetime.now() < deadline and not done.is_set():
        row = watcher.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row and row[0] == "Lock":
            return True
        done.wait(0.01)  # polls the database, not a guess at timing: the writers never sleep
    return False


def write(writer: str, conn: psycopg.Connection, symbol_id: int, bars: list[Bar]) -> UpsertResult:
    """Write ``bars`` as the daily run (``upsert_bars``) or a backfill (``store_backfilled_bars``) does."""
    if writer == "daily":
        return repository.upsert_bars(conn, symbol_id, "1day", bars, DAILY_RUN)
    return repository.store_backfilled_bars(conn, symbol_id, "1day", bars, BACKFILL_RUN)


@pytest.mark.parametrize("bars_written", [5, repository.ARRAY_UPSERT_MAX_BARS + 6], ids=["arrays", "copy"])
@pytest.mark.parametrize(("first_writer", "second_writer"), [("backfill", "daily"), ("daily", "backfill")])
def test_two_concurrent_writers_of_one_symbol_record_every_revision_once_and_count_exactly(
    market_db, db_conn, symbol_ids, bars_written, first_writer, second_writer
):
    """The first writer holds its new bars uncommitted while the second writes other values for them."""
    aapl = symbol_ids["AAPL"]
    days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(bars_written)]
    first_bars = [bar(day, close="100.5") for day in days]
    second_bars = [bar(day, close="100.75") for day in days]

    first_conn, second_conn = psycopg.connect(market_db), psycopg.connect(market_db)
    watcher = psycopg.connect(market_db, autocommit=True)
    try:
        first = write(first_writer, first_conn, aapl, first_bars)
        finished = threading.Event()
        outcome: dict[str, object] = {}

        def write_second() -> None:
            try:
                outcome["result"] = write(second_writer, second_conn, aapl, second_bars)
                second_conn.commit()
            except BaseException as exc:  # reported by the main thread
                outcome["error"] = exc
            finally:
                finished.set()

        thread = threading.Thread(target=write_second)
        thread.start()
        # The second writer must be blocked behind the first's open transaction when it commits.
        assert waiting_on_a_lock(watcher, second_conn.info.backend_pid, finished), outcome
        first_conn.commit()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        for conn in (first_conn, second_conn, watcher):
            conn.close()

    assert "error" not in outcome, outcome.get("error")
    second_run = DAILY_RUN if second_writer == "daily" else BACKFILL_RUN
    assert first == UpsertResult(inserted=bars_written, revised=0)
    assert outcome["result"] == UpsertResult(inserted=0, revised=bars_written), "each bar inserted once"
    revisions = db_conn.execute(
        "SELECT timestamp, old_close, new_close, run_id FROM bar_revisions ORDER BY timestamp"
    ).fetchall()
    assert revisions == [(day, Decimal("100.5"), Decimal("100.75"), second_run.run_id) for day in days]
    closes = db_conn.execute("SELECT DISTINCT close FROM market_data").fetchall()
    assert closes == [(Decimal("100.75"),)]


@pytest.mark.parametrize("bars_written", [3, repository.ARRAY_UPSERT_MAX_BARS + 6], ids=["arrays", "copy"])
def test_prices_beyond_the_columns_scale_log_no_phantom_revision(db_conn, symbol_ids, bars_written):
    aapl = symbol_ids["AAPL"]
    days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(bars_written)]
    # As IB's floats arrive: 100.1 + 0.2 has 14 decimals; the columns keep 8.
    close, wap = Decimal(repr(100.1 + 0.2)), Decimal("100.123456789")
    precise = [dataclasses.replace(bar(day), close=close, wap=wap) for day in days]

    assert repository.upsert_bars(db_conn, aapl, "1day", precise, DAILY_RUN) == UpsertResult(bars_written, 0)
    db_conn.commit()
    again = repository.upsert_bars(db_conn, aapl, "1day", precise, DAILY_RUN)
    backfilled = repository.store_backfilled_bars(db_conn, aapl, "1day", precise, BACKFILL_RUN)
    db_conn.commit()

    assert again == UpsertResult(0, 0) and backfilled == UpsertResult(0, 0)
    assert db_conn.execute("SELECT COUNT(*) FROM bar_revisions").fetchone()[0] == 0, "nothing changed"
    assert db_conn.execute("SELECT DISTINCT close, wap FROM market_data").fetchall() == [
        (Decimal("100.30000000"), Decimal("100.12345679"))
    ]
    # A change at the eighth decimal is a change.
    changed = [dataclasses.replace(precise[0], close=Decimal("100.30000001"))]
    assert repository.upsert_bars(db_conn, aapl, "1day", changed, DAILY_RUN) == UpsertResult(0, 1)
    db_conn.commit()
    assert db_conn.execute("SELECT COUNT(*) FROM bar_revisions").fetchone()[0] == 1


def nasdaq(conn: psycopg.Connection, day: dt.date) -> coverage.CoverageRow:
    [row] = [row for row in coverage.coverage(conn, day, day) if row.exchange == "NASDAQ"]
    return row


def test_a_one_off_no_data_answer_is_not_complete_until_the_next_run_heals_it(
    daily_dag, small_universe, market_db, ibkr_connection
):
    day, next_day = dt.date(2025, 1, 15), dt.date(2025, 1, 16)
    delay = dt.timedelta(hours=3)
    ibkr_connection.faults.set("MSFT", no_data=True)  # IB's passing trouble: one 162 for this run
    assert daily_dag.test(run_conf={"date": day.isoformat()}).state == "success"

    as_of = calendars.session_close("NASDAQ", day) + delay + dt.timedelta(minutes=1)
    with psycopg.connect(market_db) as conn:
        row = nasdaq(conn, day)
        assert (row.missing, row.no_data, row.complete) == (1, 0, False), row
        [late] = [f for f in coverage.freshness(conn, as_of, delay) if f.exchange == "NASDAQ"]
        assert (late.status, late.due, late.due_missing) == ("late", day, 1)
        assert (day, "NASDAQ") in {
            (gap.date, gap.exchange) for gap in coverage.overdue_gaps(conn, as_of, delay)
        }

    ibkr_connection.faults.clear("MSFT")
    assert daily_dag.test(run_conf={"date": next_day.isoformat()}).state == "success"

    as_of = calendars.session_close("NASDAQ", next_day) + delay + dt.timedelta(minutes=1)
    with psycopg.connect(market_db) as conn:
        row = nasdaq(conn, day)
        assert (row.missing, row.stored, row.complete) == (0, row.expected, True), row
        [fresh] = [f for f in coverage.freshness(conn, as_of, delay) if f.exchange == "NASDAQ"]
        assert fresh.status == "fresh"
        assert day in {
            session
            for (session,) in conn.execute(
                "SELECT md.timestamp::date FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
                " WHERE s.symbol = 'MSFT'"
            ).fetchall()
        }


def test_no_data_answered_on_two_different_days_is_complete(db_conn, symbol_ids):
    """A settled no-data session counts as complete; a once-seen one does not."""
    day = dt.date(2025, 1, 15)
    db_conn.execute("UPDATE symbols SET active = (symbol = 'AAPL')")
    repository.record_no_data_sessions(
        db_conn, symbol_ids["AAPL"], "1day", [day], "no data from IB", DAILY_RUN
    )
    db_conn.commit()
    assert nasdaq(db_conn, day).complete is False
    db_conn.execute("UPDATE no_data_sessions SET settled_at = NOW()")
    db_conn.commit()
    row = nasdaq(db_conn, day)
    assert (row.no_data, row.missing, row.complete) == (1, 0, True)
