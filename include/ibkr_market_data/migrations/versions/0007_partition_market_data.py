"""Partition ``market_data``: by timeframe, and the intraday timeframes by month; online.

See docs/schema.md for the steps and the lock each takes.
Revision ID: 0007
Revises: 0006
"""

import datetime as dt
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

#: Timeframes partitioned by month (``repository.partitions.MONTHLY_TIMEFRAMES``).
MONTHLY_TIMEFRAMES = ("1min", "5min", "1hour")
MOVE_BATCH_ROWS = 10_000
LOCK_TIMEOUT = "5s"
LOCK_ATTEMPTS = 5
LOCK_RETRY_SECONDS = 2.0
#: SQLSTATEs of a lock not granted in time and of a deadlock: worth another attempt.
RETRIED_SQLSTATES = frozenset({"55P03", "40P01"})

COLUMNS = "id, symbol_id, timestamp, timeframe, open, high, low, close, volume, wap, bar_count, created_at, updated_at"  # noqa: E501

# Verbatim from 0001: ATTACH matches the old table's CHECK to this one by name and expression.
VALID_BAR = """
    low > 0 AND low <= high AND low <= open AND open <= high
    AND low <= close AND close <= high AND volume >= 0
"""


def upgrade() -> None:
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        bind.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        if not _constraint_exists(bind, "market_data", "market_data_1day_only"):
            _with_lock_retries(
                lambda: bind.execute(
                    sa.text(
                        "ALTER TABLE market_data ADD CONSTRAINT market_data_1day_only"
                        " CHECK (timeframe = '1day') NOT VALID"
                    )
                )
            )
        _with_lock_retries(lambda: _create_partitioned_table(bind))
        # The steps below block neither reads nor writes: they may wait as long as they need.
        bind.execute(sa.text("RESET lock_timeout"))
        _move_other_timeframes(bind)
        bind.execute(sa.text("ALTER TABLE market_data VALIDATE CONSTRAINT market_data_1day_only"))
        _create_index_concurrently(
            bind, "market_data_1day_pkey", "market_data (symbol_id, timeframe, timestamp)"
        )
    _in_locked_transaction(_swap_in_partitioned_table)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        _create_index_concurrently(bind, "market_data_1day_id_key", "market_data_1day (id)")
        _create_index_concurrently(
            bind, "market_data_1day_natural_key", "market_data_1day (symbol_id, timeframe, timestamp)"
        )
    _in_locked_transaction(_swap_back_plain_table)


# -- upgrade steps ------------------------------------------------------------------------------


def _create_partitioned_table(bind: sa.Connection) -> None:
    """Create the future ``market_data`` (step 2), empty, under a name of its own until the swap."""
    bind.execute(
        sa.text(
            f"""
            CREATE TABLE IF NOT EXISTS market_data_partitioned (
                id          BIGINT        NOT NULL DEFAULT nextval('market_data_id_seq'),
                symbol_id   INTEGER       NOT NULL,
                timestamp   TIMESTAMP     NOT NULL,
                timeframe   VARCHAR(20)   NOT NULL,
                open        NUMERIC(20,8) NOT NULL,
                high        NUMERIC(20,8) NOT NULL,
                low         NUMERIC(20,8) NOT NULL,
                close       NUMERIC(20,8) NOT NULL,
                volume      BIGINT        NOT NULL DEFAULT 0,
                wap         NUMERIC(20,8),
                bar_count   INTEGER       DEFAULT 0,
                created_at  TIMESTAMP     DEFAULT NOW(),
                updated_at  TIMESTAMP     DEFAULT NOW(),
                CONSTRAINT market_data_partitioned_pkey PRIMARY KEY (symbol_id, timeframe, timestamp),
                CONSTRAINT market_data_symbol_id_fkey FOREIGN KEY (symbol_id) REFERENCES symbols(id),
                CONSTRAINT market_data_valid_bar CHECK ({VALID_BAR})
            ) PARTITION BY LIST (timeframe)
            """
        )
    )
    bind.execute(
        sa.text(
            "CREATE INDEX IF NOT EXISTS market_data_partitioned_timeframe_timestamp"
            " ON market_data_partitioned (timeframe, timestamp, symbol_id)"
        )
    )
    for timeframe in MONTHLY_TIMEFRAMES:
        bind.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS market_data_{timeframe} PARTITION OF market_data_partitioned"
                f" FOR VALUES IN ('{timeframe}') PARTITION BY RANGE (timestamp)"
            )
        )
    bind.execute(
        sa.text("CREATE TABLE IF NOT EXISTS market_data_default PARTITION OF market_data_partitioned DEFAULT")
    )


def _move_other_timeframes(bind: sa.Connection) -> None:
    """Move every row of a timeframe other than ``1day`` into the partitioned table in batches (step 3)."""
    for timeframe in _stored_timeframes(bind):
        if timeframe == "1day":
            continue
        if timeframe in MONTHLY_TIMEFRAMES:
            for month in _stored_months(bind, timeframe):
                _create_month(bind, timeframe, month)
        moved = 0
        while True:
            batch = bind.execute(
                sa.text(
                    f"""
                    WITH batch AS (
                        DELETE FROM market_data
                        WHERE ctid = ANY(ARRAY(SELECT ctid FROM market_data
                                               WHERE timeframe = :timeframe LIMIT :rows))
                        RETURNING {COLUMNS}
                    )
                    INSERT INTO market_data_partitioned ({COLUMNS}) SELECT {COLUMNS} FROM batch
                    """
                ),
                {"timeframe": timeframe, "rows": MOVE_BATCH_ROWS},
            ).rowcount
            if not batch:
                break
            moved += batch
        log.info("Moved %d rows of timeframe %r into the partitioned market_data", moved, timeframe)


def _stored_timeframes(bind: sa.Connection) -> list[str]:
    """Return the distinct timeframes of ``market_data``, one index probe each (a loose index scan)."""
    rows = bind.execute(
        sa.text(
            """
            WITH RECURSIVE found AS (
                SELECT min(timeframe) AS timeframe FROM market_data
                UNION ALL
                SELECT (SELECT min(timeframe) FROM market_data WHERE timeframe > found.timeframe)
                FROM found WHERE found.timeframe IS NOT NULL
            )
            SELECT timeframe FROM found WHERE timeframe IS NOT NULL
            """
        )
    )
    return [row[0] for row in rows]


def _stored_months(bind: sa.Connection, timeframe: str) -> list[dt.date]:
    """Return the first day of each month ``market_data`` holds ``timeframe`` bars of."""
    rows = bind.execute(
        sa.text(
            "SELECT DISTINCT date_trunc('month', timestamp)::date FROM market_data WHERE timeframe = :timeframe"  # noqa: E501
        ),
        {"timeframe": timeframe},
    )
    return sorted(row[0] for row in rows)


def _create_month(bind: sa.Connection, timeframe: str, month: dt.date) -> None:
    """Create the month's partition, named as ``repository.partitions.partition_name`` names it."""
    following = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    bind.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS market_data_{timeframe}_{month:%Y_%m}"
            f" PARTITION OF market_data_{timeframe}"
            f" FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
        )
    )


def _swap_in_partitioned_table(bind: sa.Connection) -> None:
    """Swap the tables (step 6) under ACCESS EXCLUSIVE on both: catalog changes only, no scan, no build."""
    bind.execute(sa.text("LOCK TABLE market_data, symbols IN ACCESS EXCLUSIVE MODE"))
    locked = time.perf_counter()
    statements = [
        "ALTER TABLE market_data DROP CONSTRAINT market_data_pkey",
        "ALTER TABLE market_data DROP CONSTRAINT market_data_natural_key",
        "ALTER TABLE market_data ADD CONSTRAINT market_data_1day_pkey PRIMARY KEY USING INDEX market_data_1day_pkey",  # noqa: E501
        "ALTER INDEX market_data_timeframe_timestamp RENAME TO market_data_1day_timeframe_timestamp_symbol_id_idx",  # noqa: E501
        "ALTER TABLE market_data RENAME TO market_data_1day",
        "ALTER TABLE market_data_partitioned RENAME TO market_data",
        "ALTER TABLE market_data RENAME CONSTRAINT market_data_partitioned_pkey TO market_data_pkey",
        "ALTER INDEX market_data_partitioned_timeframe_timestamp RENAME TO market_data_timeframe_timestamp",
        "ALTER TABLE market_data ATTACH PARTITION market_data_1day FOR VALUES IN ('1day')",
        "ALTER TABLE market_data_1day DROP CONSTRAINT market_data_1day_only",
        # Else dropping the 1day partition one day would drop the sequence every partition uses.
        "ALTER SEQUENCE market_data_id_seq OWNED BY market_data.id",
    ]
    for statement in statements:
        bind.execute(sa.text(statement))
    log.info(
        "Partitioned market_data swapped in: %.1f ms under ACCESS EXCLUSIVE, then the commit",
        (time.perf_counter() - locked) * 1000,
    )


# -- downgrade ----------------------------------------------------------------------------------


def _swap_back_plain_table(bind: sa.Connection) -> None:
    """Detach the daily bars, make them ``market_data`` again with their keys, copy the rest back."""
    statements = [
        "LOCK TABLE market_data, symbols IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE market_data DETACH PARTITION market_data_1day",
        "ALTER TABLE market_data RENAME TO market_data_partitioned",
        "ALTER TABLE market_data_partitioned RENAME CONSTRAINT market_data_pkey TO market_data_partitioned_pkey",  # noqa: E501
        "ALTER INDEX market_data_timeframe_timestamp RENAME TO market_data_partitioned_timeframe_timestamp",  # noqa: E501
        "ALTER TABLE market_data_1day RENAME TO market_data",
        "ALTER TABLE market_data DROP CONSTRAINT market_data_1day_pkey",
        "ALTER TABLE market_data ADD CONSTRAINT market_data_pkey PRIMARY KEY USING INDEX market_data_1day_id_key",  # noqa: E501
        "ALTER TABLE market_data ADD CONSTRAINT market_data_natural_key UNIQUE USING INDEX market_data_1day_natural_key",  # noqa: E501
        "ALTER INDEX market_data_1day_timeframe_timestamp_symbol_id_idx RENAME TO market_data_timeframe_timestamp",  # noqa: E501
        "ALTER SEQUENCE market_data_id_seq OWNED BY market_data.id",
        f"INSERT INTO market_data ({COLUMNS}) SELECT {COLUMNS} FROM market_data_partitioned",
        "DROP TABLE market_data_partitioned",
    ]
    for statement in statements:
        bind.execute(sa.text(statement))


# -- helpers ------------------------------------------------------------------------------------


def _in_locked_transaction(work: Callable[[sa.Connection], None]) -> None:
    """Run ``work(bind)`` in the migration's transaction, each attempt in a savepoint, locks bounded.

    A lock not granted within ``LOCK_TIMEOUT`` (or a deadlock) rolls the attempt back, which
    releases what it had locked, and tries again after a pause.
    """
    bind = op.get_bind()
    bind.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))

    def attempt() -> None:
        with bind.begin_nested():
            work(bind)

    _with_lock_retries(attempt)
    bind.execute(sa.text("SET LOCAL lock_timeout = DEFAULT"))


def _with_lock_retries(statement: Callable[[], object]) -> None:
    """Run ``statement``, again after a pause when a lock is not granted in time, up to ``LOCK_ATTEMPTS``."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            statement()
            return
        except sa.exc.DBAPIError as error:
            sqlstate = getattr(error.orig, "sqlstate", None)
            if sqlstate not in RETRIED_SQLSTATES or attempt == LOCK_ATTEMPTS:
                raise
            log.warning(
                "market_data lock not granted (attempt %d of %d, %s): retrying in %.0f s",
                attempt,
                LOCK_ATTEMPTS,
                sqlstate,
                LOCK_RETRY_SECONDS,
            )
            time.sleep(LOCK_RETRY_SECONDS)


def _create_index_concurrently(bind: sa.Connection, name: str, target: str) -> None:
    """Build a unique index concurrently, after dropping an invalid one an interrupted build left."""
    valid = bind.execute(
        sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}
    ).scalar()
    if valid:
        return
    if valid is not None:
        bind.execute(sa.text(f"DROP INDEX CONCURRENTLY {name}"))
    bind.execute(sa.text(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {target}"))


def _constraint_exists(bind: sa.Connection, table: str, name: str) -> bool:
    """Check whether ``table`` has a constraint called ``name``."""
    found = bind.execute(
        sa.text("SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(:table) AND conname = :name"),
        {"table": table, "name": name},
    ).scalar()
    return found is not None
