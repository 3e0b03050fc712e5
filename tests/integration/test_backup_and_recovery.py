"""Backup and recovery as docs/operations.md describes it, end to end.

``pg_dump`` of the market-data database, more collection, the database lost, ``pg_restore`` into a
new database; the next daily run and a backfill heal what was collected after the dump.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from ibkr_market_data import schema
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.simulated_ib import stored_bar

pytestmark = pytest.mark.skipif(
    shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
    reason="needs PostgreSQL's client tools pg_dump and pg_restore on PATH",
)


def all_bars(url: str) -> set[tuple]:
    """Return every stored bar: (symbol, timeframe, timestamp, open, high, low, close, volume, wap, count)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT s.symbol, md.timeframe, md.timestamp, md.open, md.high, md.low, md.close, md.volume,
                   md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            """
        ).fetchall()
    return set(rows)


def simulated(simulator, bars: set[tuple]) -> set[tuple]:
    """Return the simulator's daily bars for the (symbol, session) of ``bars``, in ``all_bars`` form."""
    return {
        (
            symbol,
            "1day",
            *dataclasses.astuple(stored_bar(simulator.model.daily_bar(symbol, timestamp.date()))),
        )
        for symbol, _, timestamp, *_ in bars
    }


def test_a_restored_dump_is_healed_by_the_next_daily_run_and_a_backfill(
    daily_dag,
    backfill_dag,
    small_universe,
    market_db: str,
    market_db_server: str,
    ibkr_connection,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert daily_dag.test(run_conf={"date": "2025-01-15"}).state == "success"
    dump = tmp_path / "market_data.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", market_db], check=True)
    at_dump = all_bars(market_db)

    # Collected after the dump: two more daily runs and a backfill of an older week.
    assert daily_dag.test(run_conf={"date": "2025-01-16"}).state == "success"
    assert daily_dag.test(run_conf={"date": "2025-01-17"}).state == "success"
    backfill = {"start_date": "2024-12-02", "end_date": "2024-12-06"}
    assert backfill_dag.test(run_conf=backfill).state == "success"
    before_the_loss = all_bars(market_db)
    assert len(before_the_loss) > len(at_dump)

    # The database is lost: restore the dump into a new one and point market_data_db at it.
    restored = local_postgres.create_database(market_db_server)
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={restored}", str(dump)],
            check=True,
        )
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", restored)
        schema.upgrade(restored)  # `cli migrate`: nothing to do for a dump of this version
        assert all_bars(restored) == at_dump

        requests_before = len(ibkr_connection.request_log.historical())
        assert daily_dag.test(run_conf={"date": "2025-01-17"}).state == "success"
        assert backfill_dag.test(run_conf=backfill).state == "success"

        healed = all_bars(restored)
        assert healed == before_the_loss, "everything collected since the dump is back, nothing else"
        assert healed == simulated(ibkr_connection, healed)
        # Only the missing sessions were asked for: one daily request and one backfill request a symbol.
        assert len(ibkr_connection.request_log.historical()) - requests_before == 2 * len(small_universe)
    finally:
        local_postgres.drop_database(restored)
