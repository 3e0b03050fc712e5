"""``market_data``'s monthly partitions: created by the first write into a month, before it writes.

Since migration 0007, ``market_data`` is partitioned by timeframe, and each timeframe of
``MONTHLY_TIMEFRAMES`` by month of ``timestamp``: ``market_data_1min_2025_11`` holds the 1-minute
bars of ``[2025-11-01, 2025-12-01)``. There is no default month, so a bar of a month without its
partition could not be stored: ``upsert_bars`` and ``store_backfilled_bars`` call
``ensure_partitions`` with their bars' first and last timestamps before writing. Daily bars and
any other timeframe have one partition each, made by the migration: nothing to do for them.

A partition is created as a table of its own, then attached (``ATTACH PARTITION``): that locks
the timeframe's table SHARE UPDATE EXCLUSIVE, so the reads and writes of its other months go on
(``CREATE TABLE ... PARTITION OF`` would lock it ACCESS EXCLUSIVE), and ``symbols`` SHARE ROW
EXCLUSIVE for the foreign key, so updates of symbols wait. Both until the caller's transaction
ends: the first write of each month in each timeframe pays it, once.
"""

from __future__ import annotations

import datetime as dt
import logging

from psycopg import Connection, sql

log = logging.getLogger(__name__)

#: The timeframes partitioned by month (migration 0007); ``market_data_<timeframe>`` is each one's table.
MONTHLY_TIMEFRAMES = ("1min", "5min", "1hour")

#: First key of the transaction-level advisory lock that serialises creators; the second is the timeframe's.
ADVISORY_LOCK_CLASS = 7_000_007

#: (database, partition name) of the partitions this process has seen committed: the hot path's only look-up.
_known_partitions: set[tuple[tuple[str, int, str], str]] = set()


def partition_name(timeframe: str, month: dt.date) -> str:
    """``market_data_1min_2025_11``: the partition of ``timeframe`` holding ``month``."""
    return f"market_data_{timeframe}_{month:%Y_%m}"


def months_covering(first: dt.datetime, last: dt.datetime) -> list[dt.date]:
    """The first day of every month from ``first``'s to ``last``'s, both included."""
    if last < first:
        raise ValueError(f"last ({last}) is before first ({first})")
    month, months = dt.date(first.year, first.month, 1), []
    while month <= last.date():
        months.append(month)
        month = following_month(month)
    return months


def following_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def ensure_partitions(conn: Connection, timeframe: str, first: dt.datetime, last: dt.datetime) -> list[str]:
    """Create the missing monthly partitions of ``timeframe`` that bars of ``[first, last]`` need.

    Returns the names of the partitions created (none for ``1day``, any other timeframe outside
    ``MONTHLY_TIMEFRAMES``, or a schema older than 0007). Timestamps are naive UTC, as stored.

    Runs in the caller's transaction: what it creates commits or rolls back with the caller's
    writes. Partitions that exist are looked up in the catalog, without a lock, and remembered by
    the process, so later calls cost a set look-up. Concurrent creators queue on an advisory lock
    held to the end of their transactions and look again once they have it: the first creates,
    the others find it there (READ COMMITTED, psycopg's default, sees what committed meanwhile).
    """
    if timeframe not in MONTHLY_TIMEFRAMES:
        return []
    database = (conn.info.host, conn.info.port, conn.info.dbname)
    wanted = {partition_name(timeframe, month): month for month in months_covering(first, last)}
    unknown = [name for name in wanted if (database, name) not in _known_partitions]
    if not unknown:
        return []
    parent = f"market_data_{timeframe}"
    if not _is_table(conn, parent):
        return []  # market_data is not partitioned (before migration 0007): any bar fits
    attached = _attached(conn, parent, unknown)
    _known_partitions.update((database, name) for name, committed in attached.items() if committed)
    missing = [name for name in unknown if name not in attached]
    if not missing:
        return []
    created = []
    # A savepoint inside the caller's transaction, or a transaction of its own in autocommit mode:
    # the advisory lock lasts until the outermost one ends.
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (ADVISORY_LOCK_CLASS, timeframe))
        attached = _attached(conn, parent, missing)
        for name in missing:
            if name not in attached:
                _create_partition(conn, parent, name, wanted[name])
                created.append(name)
    if created:
        log.info("Created partitions %s of %s", ", ".join(created), parent)
    return created


def forget_known_partitions() -> None:
    """Forget the partitions this process has seen: call it after detaching or dropping one."""
    _known_partitions.clear()


def _is_table(conn: Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _attached(conn: Connection, parent: str, names: list[str]) -> dict[str, bool]:
    """Which of ``names`` are partitions of ``parent``, each with whether it is known to be committed.

    One this connection's open transaction created is visible here, but a rollback would remove
    it: it must not be remembered. Its creator holds ACCESS EXCLUSIVE on it until the end of the
    transaction, and only then, so a partition this session holds that lock on counts as new.
    """
    rows = conn.execute(
        """
        SELECT c.relname::text,
               NOT EXISTS (SELECT FROM pg_locks l
                           WHERE l.locktype = 'relation' AND l.relation = c.oid
                             AND l.pid = pg_backend_pid() AND l.mode = 'AccessExclusiveLock')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass(%s) AND c.relname = ANY(%s)
        """,
        (parent, names),
    ).fetchall()
    return {name: committed for name, committed in rows}


def _create_partition(conn: Connection, parent: str, name: str, month: dt.date) -> None:
    """A table like ``parent`` (columns, defaults, CHECK), attached for ``[month, next month)``.

    ATTACH gives it the primary key, the index and the foreign key, and checks the (empty) table
    against the bounds. DDL takes no bound parameters: the bounds are quoted as literals.
    """
    table, parent_table = sql.Identifier(name), sql.Identifier(parent)
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            table, parent_table
        )
    )
    start = dt.datetime.combine(month, dt.time())
    end = dt.datetime.combine(following_month(month), dt.time())
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            parent_table, table, sql.Literal(start), sql.Literal(end)
        )
    )
