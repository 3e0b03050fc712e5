"""``market_data`` partitioned (migration 0007): online migration, monthly partitions on demand, pruning."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from ibkr_market_data import repository, schema
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext
from ibkr_market_data_dev import local_postgres
from tests.fixtures.postgres import TABLES

RUN = RunContext(dag_id="backfill_market_data", run_id="manual__partitions", try_number=1)
SESSION_OPEN = dt.datetime(2025, 11, 3, 14, 30)  # a NASDAQ session's first minute, UTC


def minute_bars(start: dt.datetime, count: int, close: str = "100.5") -> list[Bar]:
    return [
        Bar(
            timestamp=start + dt.timedelta(minutes=i),
            open=Decimal("100"),
            high=Decimal("101"),
            low=Decimal("99"),
            close=Decimal(close),
            volume=1000 + i,
            wap=Decimal("100.2"),
            bar_count=7,
        )
        for i in range(count)
    ]


def alembic_config(url: str) -> Config:
    """Return the configuration ``schema.upgrade`` builds, for the commands it does not offer (downgrade)."""
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", schema.sqlalchemy_url(url).replace("%", "%%"))
    return config


def leaf_partitions(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT relid::regclass::text FROM pg_partition_tree('market_data') WHERE isleaf ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


def keys_and_indexes(conn: psycopg.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    constraints = conn.execute(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'market_data'::regclass ORDER BY 1"
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'market_data' ORDER BY 1"
    ).fetchall()
    return constraints, indexes


# -- the migration ------------------------------------------------------------------------------


@pytest.fixture
def database_at_0006(market_db_server: str) -> Iterator[str]:
    """Yield a throwaway database at revision 0006, with symbols and nothing else."""
    url = local_postgres.create_database(market_db_server)
    try:
        schema.upgrade(url, "0006")
        with psycopg.connect(url) as conn:
            conn.execute(
                """
                INSERT INTO symbols (symbol, exchange, primary_exchange, currency, active)
                SELECT 'S' || n, 'SMART', 'NASDAQ', 'USD', TRUE FROM generate_series(1, 320) n
                """
            )
        yield url
    finally:
        local_postgres.drop_database(url)


def store_old_system_rows(url: str) -> None:
    """Daily bars, and rows of the original system's other timeframes (1-minute ones over two months)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume, wap,
                                     bar_count, created_at, updated_at)
            SELECT s, d, '1day', 10 + s, 11 + s, 9 + s, 10.5 + s, 1000 * s, 10.25 + s, s,
                   d + interval '22 hours', d + interval '23 hours'
            FROM generate_series(1, 20) s, generate_series(DATE '2024-01-01', DATE '2024-12-31', '1 day') d
            """
        )
        conn.execute(
            """
            INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume)
            SELECT s, t, tf, 10, 11, 9, 10, 5
            FROM generate_series(1, 3) s,
                 (VALUES ('1min', TIMESTAMP '2024-10-31 19:55', TIMESTAMP '2024-11-01 14:35',
                          INTERVAL '1 minute'),
                         ('weekly', TIMESTAMP '2024-01-05', TIMESTAMP '2024-03-29', INTERVAL '7 days'),
                         ('1 secs', TIMESTAMP '2024-02-01 15:00', TIMESTAMP '2024-02-01 15:00:59',
                          INTERVAL '1 second')
                 ) r(tf, first, last, step),
                 generate_series(r.first, r.last, r.step) t
            """
        )


def all_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT * FROM market_data ORDER BY id").fetchall()


def test_the_migration_keeps_every_row_and_attaches_the_old_table_without_copying_it(database_at_0006):
    store_old_system_rows(database_at_0006)
    before = all_rows(database_at_0006)
    with psycopg.connect(database_at_0006) as conn:
        old_files = conn.execute(
            "SELECT pg_relation_filenode('market_data'), "
            "pg_relation_filenode('market_data_timeframe_timestamp')"
        ).fetchone()

    schema.upgrade(database_at_0006)

    assert all_rows(database_at_0006) == before
    with psycopg.connect(database_at_0006) as conn:
        assert (
            conn.execute("SELECT relkind FROM pg_class WHERE oid = 'market_data'::regclass").fetchone()[0]
            == "p"
        )
        # The daily bars stay in the very files they were in: attached, not copied, no index rebuilt.
        assert (
            conn.execute(
                "SELECT pg_relation_filenode('market_data_1day'),"
                " pg_relation_filenode('market_data_1day_timeframe_timestamp_symbol_id_idx')"
            ).fetchone()
            == old_files
        )
        where = dict(
            conn.execute(
                "SELECT timeframe, "
                "string_agg(DISTINCT tableoid::regclass::text, ',' ORDER BY tableoid::regclass::text)"
                " FROM market_data GROUP BY timeframe"
            ).fetchall()
        )
        assert where == {
            "1day": "market_data_1day",
            "1min": "market_data_1min_2024_10,market_data_1min_2024_11",
            "weekly": "market_data_default",
            "1 secs": "market_data_default",
        }
        assert leaf_partitions(conn) == [
            "market_data_1day",
            "market_data_1min_2024_10",
            "market_data_1min_2024_11",
            "market_data_default",
        ]
        constraints, indexes = keys_and_indexes(conn)
        assert ("market_data_pkey", 'PRIMARY KEY (symbol_id, timeframe, "timestamp")') in constraints
        # 0012 replaced the foreign key to symbols by statement triggers (test_symbol_check.py).
        assert {name for name, _ in constraints} == {"market_data_pkey", "market_data_valid_bar"}
        assert [name for name, _ in indexes] == ["market_data_pkey", "market_data_timeframe_timestamp"]
        # A new bar takes the next id of the same sequence.
        conn.execute(
            "INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close)"
            " VALUES (1, '2025-01-02', '1day', 1, 1, 1, 1)"
        )
        new_id = conn.execute("SELECT id FROM market_data WHERE timestamp = '2025-01-02'").fetchone()[0]
        assert new_id == max(row[0] for row in before) + 1


def test_the_downgrade_keeps_every_row_and_restores_the_plain_table(database_at_0006):
    with psycopg.connect(database_at_0006) as conn:
        keys_at_0006 = keys_and_indexes(conn)
    store_old_system_rows(database_at_0006)
    schema.upgrade(database_at_0006)
    with psycopg.connect(database_at_0006) as conn:
        repository.upsert_bars(conn, 7, "1min", minute_bars(SESSION_OPEN, 390))
    before = all_rows(database_at_0006)

    command.downgrade(alembic_config(database_at_0006), "0006")

    assert all_rows(database_at_0006) == before
    with psycopg.connect(database_at_0006) as conn:
        assert (
            conn.execute("SELECT relkind FROM pg_class WHERE oid = 'market_data'::regclass").fetchone()[0]
            == "r"
        )
        assert keys_and_indexes(conn) == keys_at_0006
        leftovers = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'market\\_data\\_%' AND relkind IN ('r', 'p')"
        ).fetchall()
        assert leftovers == []
    # And up again, as a deployment that rolled back and forward would.
    schema.upgrade(database_at_0006)
    assert all_rows(database_at_0006) == before


def test_reads_and_writes_go_on_while_the_migration_runs(database_at_0006, caplog):
    """A writer stores a daily bar every few milliseconds during the upgrade: none fails, none waits long."""
    caplog.set_level(logging.INFO)
    with psycopg.connect(database_at_0006) as conn:
        conn.execute(
            """
            INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume)
            SELECT s, d, '1day', 10, 11, 9, 10, 1000
            FROM generate_series(1, 320) s, generate_series(DATE '2020-01-01', DATE '2021-12-31', '1 day') d
            """
        )
    done = threading.Event()
    waits: list[float] = []
    errors: list[BaseException] = []

    def write_and_read() -> None:
        day = dt.datetime(2030, 1, 1)
        with psycopg.connect(database_at_0006, autocommit=True) as conn:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(
                        "INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close)"
                        " VALUES (1, %s, '1day', 10, 11, 9, 10)",
                        (day,),
                    )
                    conn.execute(
                        "SELECT close FROM market_data WHERE symbol_id = 1 AND timestamp = %s", (day,)
                    )
                except psycopg.Error as error:
                    errors.append(error)
                waits.append(time.perf_counter() - started)
                day += dt.timedelta(days=1)
                time.sleep(0.005)

    writer = threading.Thread(target=write_and_read)
    writer.start()
    try:
        time.sleep(0.2)
        schema.upgrade(database_at_0006)
        time.sleep(0.2)
    finally:
        done.set()
        writer.join()

    assert errors == []
    [swap] = [
        record
        for record in caplog.records
        if record.getMessage().startswith("Partitioned market_data swapped in")
    ]
    assert swap.args[0] < 1000  # milliseconds under ACCESS EXCLUSIVE, for 234,000 daily bars
    assert len(waits) > 50
    assert max(waits) < 2.0, f"a write waited {max(waits):.2f} s"
    with psycopg.connect(database_at_0006) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM market_data WHERE timestamp >= '2030-01-01'").fetchone()[
            0
        ]
    assert stored == len(waits)


def test_a_long_reader_makes_the_migration_retry_its_lock_not_fail(database_at_0006, caplog):
    """Hold ``market_data`` past the lock timeout: the migration stops waiting, retries and succeeds."""
    store_old_system_rows(database_at_0006)
    reading = threading.Event()

    def long_reader() -> None:
        with psycopg.connect(database_at_0006) as conn:
            conn.execute("SELECT COUNT(*) FROM market_data")  # ACCESS SHARE until the transaction ends
            reading.set()
            time.sleep(7)  # longer than the migration's LOCK_TIMEOUT of 5 s
            conn.rollback()

    reader = threading.Thread(target=long_reader)
    reader.start()
    reading.wait()
    started = time.perf_counter()
    try:
        schema.upgrade(database_at_0006)
    finally:
        reader.join()

    assert time.perf_counter() - started > 5
    assert any("lock not granted (attempt 1 of 5, 55P03)" in record.getMessage() for record in caplog.records)
    with psycopg.connect(database_at_0006) as conn:
        assert (
            conn.execute("SELECT relkind FROM pg_class WHERE oid = 'market_data'::regclass").fetchone()[0]
            == "p"
        )


# -- monthly partitions on demand ---------------------------------------------------------------


@pytest.mark.parametrize("count", [30, 390], ids=["arrays", "copy"])
def test_an_upsert_into_a_month_without_a_partition_creates_it(partitioned_db, count):
    conn = partitioned_db
    first = repository.upsert_bars(conn, 1, "1min", minute_bars(SESSION_OPEN, count), RUN)
    conn.commit()
    assert (first.inserted, first.revised) == (count, 0)
    assert leaf_partitions(conn) == ["market_data_1day", "market_data_1min_2025_11", "market_data_default"]
    assert conn.execute("SELECT COUNT(*) FROM market_data_1min_2025_11").fetchone()[0] == count

    again = repository.upsert_bars(conn, 1, "1min", minute_bars(SESSION_OPEN, count), RUN)
    conn.commit()
    assert (again.inserted, again.revised) == (0, 0)

    changed = minute_bars(SESSION_OPEN, count)
    changed[5] = minute_bars(changed[5].timestamp, 1, close="100.75")[0]
    revised = repository.upsert_bars(conn, 1, "1min", changed, RUN)
    conn.commit()
    assert (revised.inserted, revised.revised) == (0, 1)
    assert conn.execute("SELECT timestamp, old_close, new_close FROM bar_revisions").fetchall() == [
        (changed[5].timestamp, Decimal("100.5"), Decimal("100.75"))
    ]


def test_bars_across_months_get_each_month_and_the_backfill_path_too(partitioned_db):
    conn = partitioned_db
    hourly = [
        Bar(dt.datetime(2025, 10, 31, 14) + dt.timedelta(hours=h), *(Decimal("10"),) * 4, 10, None, 1)
        for h in range(0, 48, 6)
    ]
    result = repository.store_backfilled_bars(conn, 1, "1hour", hourly, RUN)
    conn.commit()
    assert (result.inserted, result.revised) == (len(hourly), 0)
    assert "market_data_1hour_2025_10" in leaf_partitions(conn)
    assert "market_data_1hour_2025_11" in leaf_partitions(conn)
    again = repository.store_backfilled_bars(conn, 1, "1hour", hourly, RUN)
    conn.commit()
    assert (again.inserted, again.revised) == (0, 0)
    assert conn.execute("SELECT COUNT(*) FROM market_data WHERE timeframe = '1hour'").fetchone()[0] == len(
        hourly
    )


def test_ensure_partitions_is_idempotent_and_leaves_other_timeframes_alone(partitioned_db):
    conn = partitioned_db
    first, last = dt.datetime(2026, 1, 15), dt.datetime(2026, 3, 2)
    created = repository.ensure_partitions(conn, "5min", first, last)
    conn.commit()
    assert created == ["market_data_5min_2026_01", "market_data_5min_2026_02", "market_data_5min_2026_03"]
    assert repository.ensure_partitions(conn, "5min", first, last) == []
    repository.forget_known_partitions()
    assert repository.ensure_partitions(conn, "5min", first, last) == []  # found in the catalog
    assert repository.ensure_partitions(conn, "1day", first, last) == []
    assert repository.ensure_partitions(conn, "weekly", first, last) == []
    conn.commit()
    bounds = conn.execute(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'market_data_5min_2026_02'"
    ).fetchone()[0]
    assert bounds == "FOR VALUES FROM ('2026-02-01 00:00:00') TO ('2026-03-01 00:00:00')"


def test_a_partition_created_by_a_transaction_that_rolls_back_is_not_remembered(partitioned_db):
    conn = partitioned_db
    month = dt.datetime(2026, 5, 4)
    assert repository.ensure_partitions(conn, "1min", month, month) == ["market_data_1min_2026_05"]
    # Seen again in the same transaction: there, but not committed.
    assert repository.ensure_partitions(conn, "1min", month, month) == []
    conn.rollback()
    assert "market_data_1min_2026_05" not in leaf_partitions(conn)
    result = repository.upsert_bars(conn, 1, "1min", minute_bars(month, 3))
    conn.commit()
    assert result.inserted == 3


def test_two_concurrent_callers_both_succeed_and_one_creates(partitioned_db, market_db):
    month = dt.datetime(2026, 7, 1)
    start = threading.Barrier(2)
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def create(caller: int) -> None:
        try:
            with psycopg.connect(market_db) as conn:
                start.wait()
                results[caller] = repository.ensure_partitions(conn, "1min", month, month)
                repository.upsert_bars(conn, 1, "1min", minute_bars(month + dt.timedelta(minutes=caller), 1))
                time.sleep(0.3)  # hold the transaction open: the other one must wait, then find it
                conn.commit()
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    callers = [threading.Thread(target=create, args=(caller,)) for caller in (0, 1)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()

    assert errors == []
    assert sorted(results.values()) == [[], ["market_data_1min_2026_07"]]
    assert partitioned_db.execute("SELECT COUNT(*) FROM market_data_1min_2026_07").fetchone()[0] == 2


def test_a_one_symbol_day_read_touches_one_partition(partitioned_db):
    conn = partitioned_db
    for day in (dt.datetime(2025, 10, 1, 13, 30), SESSION_OPEN, dt.datetime(2025, 12, 1, 14, 30)):
        repository.upsert_bars(conn, 1, "1min", minute_bars(day, 390))
    repository.upsert_bars(conn, 1, "1day", minute_bars(dt.datetime(2025, 11, 3), 1))
    conn.commit()

    def scanned(query: str, params: tuple) -> set[str]:
        [[plan]] = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchall()

        def relations(node: dict) -> set[str]:
            found = {node["Relation Name"]} if "Relation Name" in node else set()
            for child in node.get("Plans", []):
                found |= relations(child)
            return found

        return relations(plan[0]["Plan"])

    day = SESSION_OPEN.replace(hour=0, minute=0)
    one_day = (
        "SELECT * FROM market_data "
        "WHERE symbol_id = %s AND timeframe = %s AND timestamp >= %s AND timestamp < %s"
    )
    assert scanned(one_day, (1, "1min", day, day + dt.timedelta(days=1))) == {"market_data_1min_2025_11"}
    assert scanned(one_day, (1, "1day", day, day + dt.timedelta(days=1))) == {"market_data_1day"}
    year = scanned(one_day, (1, "1min", dt.datetime(2025, 1, 1), dt.datetime(2026, 1, 1)))
    assert year == {"market_data_1min_2025_10", "market_data_1min_2025_11", "market_data_1min_2025_12"}


def test_the_fixtures_truncate_empties_every_partition_and_restarts_the_ids(partitioned_db):
    conn = partitioned_db
    repository.upsert_bars(conn, 1, "1min", minute_bars(SESSION_OPEN, 10))
    repository.upsert_bars(conn, 1, "1day", minute_bars(dt.datetime(2025, 11, 3), 1))
    conn.commit()
    conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    conn.commit()
    assert conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM market_data_1min_2025_11").fetchone()[0] == 0
    conn.execute(
        "INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency) "
        "VALUES (1, 'A', 'SMART', 'NASDAQ', 'USD')"
    )
    repository.upsert_bars(conn, 1, "1min", minute_bars(SESSION_OPEN, 1))
    assert conn.execute("SELECT id FROM market_data").fetchone()[0] == 1
