"""How bars are written: commits that do not wait for the disk, and the symbol check per statement (0012)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from alembic import command

from ibkr_market_data import repository, schema
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext
from ibkr_market_data_dev import local_postgres
from tests.integration.test_partitions import alembic_config, minute_bars

RUN = RunContext(dag_id="daily_market_data", run_id="manual__bar_writes", try_number=1)
SESSION_OPEN = dt.datetime(2025, 11, 3, 14, 30)
DAY = dt.datetime(2025, 11, 3)


def daily_bar(day: dt.datetime) -> Bar:
    return Bar(day, Decimal("10"), Decimal("11"), Decimal("9"), Decimal("10.5"), 1000, Decimal("10.2"), 5)


WRITES = {
    "daily upsert (arrays)": lambda conn, symbol_id: repository.upsert_bars(
        conn, symbol_id, "1day", [daily_bar(DAY)], RUN
    ),
    "intraday upsert (COPY)": lambda conn, symbol_id: repository.upsert_bars(
        conn, symbol_id, "1min", minute_bars(SESSION_OPEN, 390), RUN, "America/New_York"
    ),
    "backfill": lambda conn, symbol_id: repository.store_backfilled_bars(
        conn, symbol_id, "1min", minute_bars(SESSION_OPEN, 390), RUN, "America/New_York"
    ),
}


def synchronous_commit(conn: psycopg.Connection) -> str:
    return str(conn.execute("SHOW synchronous_commit").fetchone()[0])


# -- commits that do not wait for the disk --------------------------------------------------------


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_a_bar_write_lets_its_transaction_commit_without_waiting_for_the_disk(
    partitioned_db, write, monkeypatch
):
    monkeypatch.delenv(repository.SYNCHRONOUS_BAR_COMMITS_VARIABLE, raising=False)
    conn = partitioned_db
    assert synchronous_commit(conn) == "on"  # the server's setting, before any bar is written

    write(conn, 1)

    assert synchronous_commit(conn) == "off"
    conn.commit()
    # Only that transaction: the next one on the connection waits for the disk again.
    assert synchronous_commit(conn) == "on"
    assert conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] > 0


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_the_operator_can_make_bar_commits_wait_for_the_disk(partitioned_db, write, monkeypatch):
    monkeypatch.setenv(repository.SYNCHRONOUS_BAR_COMMITS_VARIABLE, "1")
    conn = partitioned_db

    write(conn, 1)

    assert synchronous_commit(conn) == "on"
    conn.commit()


@pytest.mark.parametrize(
    ("raw", "synchronous"),
    [(None, False), ("", False), ("0", False), ("off", False), ("1", True), ("TRUE", True), ("on", True)],
)
def test_synchronous_bar_commits_reads_the_variable(raw, synchronous):
    environ = {} if raw is None else {repository.SYNCHRONOUS_BAR_COMMITS_VARIABLE: raw}
    assert repository.synchronous_bar_commits(environ) is synchronous


def test_a_malformed_setting_waits_for_the_disk_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        assert repository.synchronous_bar_commits({repository.SYNCHRONOUS_BAR_COMMITS_VARIABLE: "yes please"})
    assert "IBKR_SYNCHRONOUS_BAR_COMMITS='yes please' is not 0 or 1" in caplog.text


# -- the symbol check, once per statement ---------------------------------------------------------


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_a_bar_of_an_unknown_symbol_is_refused_and_nothing_of_it_stays(partitioned_db, write):
    conn = partitioned_db
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="symbol_id 999, which is not in symbols"):
        write(conn, 999)
    conn.rollback()
    assert conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 0

    write(conn, 1)  # the same write of a known symbol goes through
    conn.commit()


@pytest.mark.parametrize("partition", ["market_data_1min_2025_11", "market_data_1day", "market_data_default"])
def test_a_write_naming_a_partition_is_checked_too(partitioned_db, partition):
    conn = partitioned_db
    repository.ensure_partitions(conn, "1min", SESSION_OPEN, SESSION_OPEN)  # created now, at run time
    conn.commit()
    timeframe = {"market_data_1min_2025_11": "1min", "market_data_1day": "1day"}.get(partition, "weekly")
    insert = (
        f"INSERT INTO {partition} (symbol_id, timestamp, timeframe, open, high, low, close)"  # noqa: S608
        " VALUES (%s, %s, %s, 10, 11, 9, 10)"
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=f"cannot be stored in {partition}"):
        conn.execute(insert, (999, SESSION_OPEN, timeframe))
    conn.rollback()
    conn.execute(insert, (1, SESSION_OPEN, timeframe))
    conn.commit()
    # An UPDATE that moves a bar to an unknown symbol is refused as well.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(f"UPDATE {partition} SET symbol_id = 999")  # noqa: S608
    conn.rollback()


def test_a_symbol_with_bars_can_be_neither_deleted_nor_renumbered_nor_truncated_away(partitioned_db):
    conn = partitioned_db
    conn.execute(
        "INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency, active)"
        " VALUES (2, 'MSFT', 'SMART', 'NASDAQ', 'USD', TRUE)"
    )
    repository.upsert_bars(conn, 1, "1day", [daily_bar(DAY)], RUN)
    conn.commit()

    for statement in (
        "DELETE FROM symbols WHERE id = 1",
        "UPDATE symbols SET id = 3 WHERE id = 1",
        "TRUNCATE symbols CASCADE",
    ):
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="symbol"):
            conn.execute(statement)
        conn.rollback()
    assert conn.execute("SELECT COUNT(*) FROM market_data WHERE symbol_id = 1").fetchone()[0] == 1

    # A symbol without bars goes, as before; other columns of one with bars change freely.
    conn.execute("DELETE FROM symbols WHERE id = 2")
    conn.execute("UPDATE symbols SET active = FALSE WHERE id = 1")
    conn.commit()


def test_a_delete_racing_an_uncommitted_bar_waits_for_it_then_fails(partitioned_db, market_db):
    """The bars' writer holds its symbol FOR KEY SHARE, as the foreign key did: the delete cannot slip in."""
    writer = partitioned_db
    repository.upsert_bars(writer, 1, "1day", [daily_bar(DAY)], RUN)  # not committed yet
    outcome: list[BaseException | None] = []
    deleter_pid: list[int] = []

    def delete_symbol() -> None:
        with psycopg.connect(market_db) as conn:
            deleter_pid.append(conn.info.backend_pid)
            try:
                conn.execute("DELETE FROM symbols WHERE id = 1")
                conn.commit()
                outcome.append(None)
            except psycopg.Error as exc:
                outcome.append(exc)

    deleter = threading.Thread(target=delete_symbol)
    deleter.start()
    with psycopg.connect(market_db, autocommit=True) as observer:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = observer.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                (deleter_pid[0] if deleter_pid else 0,),
            ).fetchone()
            if waiting and waiting[0]:
                break
        else:
            pytest.fail("the DELETE never waited for the writer's lock on its symbol")
    writer.commit()
    deleter.join(timeout=30)

    assert isinstance(outcome[0], psycopg.errors.ForeignKeyViolation)
    assert writer.execute("SELECT COUNT(*) FROM market_data WHERE symbol_id = 1").fetchone()[0] == 1


def test_the_downgrade_from_0012_restores_the_foreign_key(market_db_server):
    url = local_postgres.create_database(market_db_server)
    try:
        schema.upgrade(url)
        with psycopg.connect(url) as conn:
            repository.ensure_partitions(conn, "1min", SESSION_OPEN, SESSION_OPEN)
            conn.commit()
        command.downgrade(alembic_config(url), "0011")
        with psycopg.connect(url) as conn:
            assert conn.execute(
                "SELECT COUNT(*) FROM pg_constraint WHERE conname = 'market_data_symbol_id_fkey'"
                " AND conrelid = 'market_data'::regclass"
            ).fetchone() == (1,)
            assert (
                conn.execute(
                    "SELECT tgname FROM pg_trigger WHERE tgname LIKE '%symbols%' AND NOT tgisinternal"
                ).fetchall()
                == []
            )
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.execute(
                    "INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close)"
                    " VALUES (999, %s, '1min', 10, 11, 9, 10)",
                    (SESSION_OPEN,),
                )
    finally:
        repository.forget_known_partitions()
        local_postgres.drop_database(url)


# -- the straight COPY, and a writer that slips in before it --------------------------------------


def test_a_bar_stored_by_another_writer_after_the_check_sends_the_write_to_the_comparison(
    partitioned_db, market_db, monkeypatch
):
    """The COPY fails on the other writer's bar, rolls back to its savepoint, and compares instead."""
    from ibkr_market_data.repository import bars as bars_module

    conn = partitioned_db
    repository.ensure_partitions(conn, "1min", SESSION_OPEN, SESSION_OPEN)  # for the other writer too
    conn.commit()
    incoming = minute_bars(SESSION_OPEN, 390)
    slipped_in = minute_bars(SESSION_OPEN + dt.timedelta(minutes=7), 1, close="100.75")[0]
    copy_new_bars = bars_module._copy_new_bars

    def another_writer_first(cursor, symbol_id, timeframe, bars):
        with psycopg.connect(market_db, autocommit=True) as other:
            other.execute(
                "INSERT INTO market_data (symbol_id, timeframe, timestamp, open, high, low, close, volume,"
                " wap, bar_count) VALUES (1, '1min', %s, 100, 101, 99, %s, %s, 100.2, 7)",
                (slipped_in.timestamp, slipped_in.close, slipped_in.volume),
            )
        copy_new_bars(cursor, symbol_id, timeframe, bars)

    monkeypatch.setattr(bars_module, "_copy_new_bars", another_writer_first)

    result = repository.store_backfilled_bars(conn, 1, "1min", incoming, RUN, "America/New_York")
    conn.commit()

    assert (result.inserted, result.revised) == (389, 1)
    stored = conn.execute("SELECT COUNT(*), SUM(close) FROM market_data WHERE symbol_id = 1").fetchone()
    assert stored == (390, sum(bar.close for bar in incoming))
    assert conn.execute("SELECT old_close, new_close FROM bar_revisions").fetchall() == [
        (Decimal("100.75"), Decimal("100.5"))
    ]
