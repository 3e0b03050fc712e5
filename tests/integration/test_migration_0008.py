"""Migration 0008 (corporate actions, identities, memberships) runs online: collection goes on meanwhile."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from ibkr_market_data import schema
from ibkr_market_data_dev import local_postgres


@pytest.fixture
def database_at_0007(market_db_server: str) -> Iterator[str]:
    """Yield a throwaway database at revision 0007 holding symbols and two years of their daily bars."""
    url = local_postgres.create_database(market_db_server)
    try:
        schema.upgrade(url, "0007")
        with psycopg.connect(url) as conn:
            conn.execute(
                """
                INSERT INTO symbols (symbol, exchange, primary_exchange, currency, con_id, active)
                SELECT 'S' || n, 'SMART', 'NASDAQ', 'USD', n, TRUE FROM generate_series(1, 320) n
                """
            )
            conn.execute(
                """
                INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume)
                SELECT s, d, '1day', 10, 11, 9, 10, 1000
                FROM generate_series(1, 320) s,
                     generate_series(DATE '2023-01-01', DATE '2024-12-31', '1 day') d
                """
            )
        yield url
    finally:
        local_postgres.drop_database(url)


def test_reads_and_writes_go_on_while_0008_runs_and_every_row_stays(database_at_0007):
    """A writer stores a bar and touches its symbol every few milliseconds during the upgrade."""
    with psycopg.connect(database_at_0007) as conn:
        before = conn.execute("SELECT COUNT(*), SUM(close) FROM market_data").fetchone()
    done = threading.Event()
    waits: list[float] = []
    finished_at: list[float] = []
    errors: list[BaseException] = []

    def write_and_read() -> None:
        day = dt.datetime(2030, 1, 1)
        with psycopg.connect(database_at_0007, autocommit=True) as conn:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(
                        "INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close)"
                        " VALUES (1, %s, '1day', 10, 11, 9, 10)",
                        (day,),
                    )
                    conn.execute("UPDATE symbols SET updated_at = NOW() WHERE id = 1")
                    conn.execute("SELECT symbol, active FROM symbols WHERE id = 1").fetchone()
                except psycopg.Error as error:
                    errors.append(error)
                waits.append(time.perf_counter() - started)
                finished_at.append(time.perf_counter())
                day += dt.timedelta(days=1)
                time.sleep(0.005)

    writer = threading.Thread(target=write_and_read)
    writer.start()
    try:
        time.sleep(0.2)
        migration_started = time.perf_counter()
        schema.upgrade(database_at_0007, "0008")
        migration_ended = time.perf_counter()
        time.sleep(0.2)
    finally:
        done.set()
        writer.join()

    assert errors == []
    during = [moment for moment in finished_at if migration_started <= moment <= migration_ended]
    assert during, "no write finished while the migration ran"
    assert max(waits) < 2.0, f"a write waited {max(waits):.2f} s"
    with psycopg.connect(database_at_0007) as conn:
        assert (
            conn.execute(
                "SELECT COUNT(*), SUM(close) FROM market_data WHERE timestamp < '2030-01-01'"
            ).fetchone()
            == before
        )
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        new_columns = conn.execute(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'symbols'"
            " AND column_name IN ('last_session', 'inactive_since')"
        ).fetchone()[0]
        # Nullable columns without a default: adding them rewrote nothing.
        nulls = conn.execute(
            "SELECT COUNT(*) FROM symbols WHERE last_session IS NULL AND inactive_since IS NULL"
        ).fetchone()[0]
    assert (revision, new_columns, nulls) == ("0008", 2, 320)
