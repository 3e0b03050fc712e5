"""``market_data``'s monthly partitions: created by the first write into a month, before it writes.

Each timeframe of ``MONTHLY_TIMEFRAMES`` is partitioned by month with no default partition, so the
writers call ``ensure_partitions`` first. See docs/schema.md.
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
    """Return the name of the partition of ``timeframe`` holding ``month``: ``market_data_1min_2025_11``."""
    return f"market_data_{timeframe}_{month:%Y_%m}"


def months_covering(first: dt.datetime, last: dt.datetime) -> list[dt.date]:
    """Return the first day of every month from ``first``'s to ``last``'s, both included."""
    if last < first:
        raise ValueError(f"last ({last}) is before first ({first})")
    month, months = dt.date(first.year, first.month, 1), []
    while month <= last.date():
        months.append(month)
        month = following_month(month)
    return months


def following_month(month: dt.date) -> dt.date:
    """Return the first day of the month after ``month``'s."""
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def ensure_partitions(conn: Connection, timeframe: str, first: dt.datetime, last: dt.datetime) -> list[str]:
    """Create the missing monthly partitions of ``timeframe`` that bars of ``[first, last]`` need.

    It runs in the caller's transaction, so what it creates commits or rolls back with the caller's
    writes; concurrent creators queue on an advisory lock.

    :param first: the first bar's timestamp, naive UTC as stored.
    :param last: the last bar's timestamp, naive UTC as stored.
    :return: the names of the partitions created (none for a timeframe outside ``MONTHLY_TIMEFRAMES``
        or a schema older than 0007).
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
    """Check whether the table ``name`` exists."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _attached(conn: Connection, parent: str, names: list[str]) -> dict[str, bool]:
    """Return which of ``names`` are partitions of ``parent``, each with whether it is known to be committed.

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
    """Create a table like ``parent`` (columns, defaults, CHECK) and attach it for ``[month, next month)``.

    ATTACH gives it the primary key and the index, and checks the (empty) table against the bounds.
    Since 0012 it also gets the statement triggers that check a bar's symbol (a statement naming a
    partition does not fire its parent's). DDL takes no bound parameters: the bounds are quoted as
    literals.
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
    checked = conn.execute("SELECT to_regprocedure('market_data_check_symbols()') IS NOT NULL").fetchone()
    if checked and checked[0]:
        for event, suffix in (("INSERT", "inserted"), ("UPDATE", "updated")):
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER {} ON {} REFERENCING NEW TABLE AS written_bars"
                    " FOR EACH STATEMENT EXECUTE FUNCTION market_data_check_symbols()"
                ).format(sql.Identifier(f"{name}_symbols_{suffix}"), sql.SQL(event), table)
            )
