"""Each symbol's identity over time: ``symbol_identities``, ``universe_memberships``, who is inactive and why.

See docs/corporate-actions.md and docs/schema.md#corporate-actions-0008.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row

from ibkr_market_data.bars import DAILY_TIMEFRAME
from ibkr_market_data.repository.symbols import _SYMBOL_COLUMNS, SymbolRow
from ibkr_market_data.universe import Membership, UniverseSymbol

#: ``symbols.inactive_reason`` of a symbol no universe file lists any more.
REMOVED_FROM_UNIVERSE = "removed from the universe files"


def universe_symbol_ids(
    conn: Connection, symbols: Sequence[UniverseSymbol]
) -> dict[tuple[str, str, str], int]:
    """Return the id of each universe row's symbol by (symbol, primary exchange, currency), as in the file."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.symbol, s.primary_exchange, s.currency, s.id
            FROM symbols s
            JOIN unnest(%s::text[], %s::text[], %s::text[]) AS u(symbol, primary_exchange, currency)
              ON s.symbol = u.symbol AND s.primary_exchange = u.primary_exchange AND s.currency = u.currency
            """,
            (
                [entry.symbol for entry in symbols],
                [entry.primary_exchange for entry in symbols],
                [entry.currency for entry in symbols],
            ),
        )
        return {(symbol, exchange, currency): symbol_id for symbol, exchange, currency, symbol_id in cursor}


def record_memberships(conn: Connection, memberships: Mapping[int, Sequence[Membership]]) -> int:
    """Replace the list memberships of the symbols given with ``memberships``; return the rows written."""
    rows = [
        (symbol_id, membership.source_list, membership.valid_from, membership.valid_to)
        for symbol_id, periods in memberships.items()
        for membership in periods
    ]
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM universe_memberships WHERE symbol_id = ANY(%s)", (list(memberships),))
        cursor.executemany(
            """
            INSERT INTO universe_memberships (symbol_id, source_list, valid_from, valid_to)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (symbol_id, source_list) DO NOTHING
            """,
            rows,
        )
    return len(rows)


def membership_periods(conn: Connection, symbol_ids: Sequence[int]) -> dict[int, list[Membership]]:
    """Return each symbol's list memberships; a symbol without any row is in no period and always expected."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, source_list, valid_from, valid_to FROM universe_memberships
            WHERE symbol_id = ANY(%s) ORDER BY symbol_id, valid_from NULLS FIRST, source_list
            """,
            (list(symbol_ids),),
        )
        periods: dict[int, list[Membership]] = {}
        for symbol_id, source_list, valid_from, valid_to in cursor.fetchall():
            periods.setdefault(symbol_id, []).append(Membership(source_list, valid_from, valid_to))
        return periods


def retire_symbols_not_in(conn: Connection, keep: Collection[int]) -> list[str]:
    """Deactivate the active symbols whose id is not in ``keep`` (the universe's); return their names.

    Their bars and every other row stay: only ``active``, the reason and ``inactive_since`` change.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbols SET active = FALSE, inactive_reason = %s, inactive_since = NOW(),
                               updated_at = NOW()
            WHERE active AND NOT id = ANY(%s)
            RETURNING symbol
            """,
            (REMOVED_FROM_UNIVERSE, list(keep)),
        )
        return sorted(row[0] for row in cursor.fetchall())


def reactivate_returned(conn: Connection, ids: Collection[int]) -> list[str]:
    """Activate again the symbols of ``ids`` that were retired for leaving the universe; return their names.

    Only those: a delisted or unresolved symbol stays inactive.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbols SET active = TRUE, inactive_reason = NULL, inactive_since = NULL,
                               updated_at = NOW()
            WHERE id = ANY(%s) AND NOT active AND inactive_reason = %s AND con_id IS NOT NULL
            RETURNING symbol
            """,
            (list(ids), REMOVED_FROM_UNIVERSE),
        )
        return sorted(row[0] for row in cursor.fetchall())


def record_identity(conn: Connection, symbol_id: int, con_id: int, valid_from: dt.date | None = None) -> None:
    """Record that ``symbol_id`` has conId ``con_id`` from ``valid_from`` (None: since before we knew)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO symbol_identities (symbol_id, con_id, valid_from) VALUES (%s, %s, %s)
            ON CONFLICT (symbol_id, con_id) DO NOTHING
            """,
            (symbol_id, con_id, valid_from),
        )


def change_con_id(
    conn: Connection, symbol_id: int, old_con_id: int, new_con_id: int, effective: dt.date
) -> None:
    """Give ``symbol_id`` its new conId from session ``effective``: the old identity ends the day before.

    The symbol keeps its id, so its history before and after is one series.
    """
    record_identity(conn, symbol_id, old_con_id)
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbol_identities SET valid_to = %s
            WHERE symbol_id = %s AND con_id = %s AND valid_to IS NULL
            """,
            (effective - dt.timedelta(days=1), symbol_id, old_con_id),
        )
        cursor.execute(
            """
            INSERT INTO symbol_identities (symbol_id, con_id, valid_from) VALUES (%s, %s, %s)
            ON CONFLICT (symbol_id, con_id) DO UPDATE SET valid_from = EXCLUDED.valid_from, valid_to = NULL
            """,
            (symbol_id, new_con_id, effective),
        )
        cursor.execute(
            "UPDATE symbols SET con_id = %s, resolved_at = NOW(), updated_at = NOW() WHERE id = %s",
            (new_con_id, symbol_id),
        )


def mark_delisted(
    conn: Connection, symbol_id: int, con_id: int | None, last_session: dt.date | None, reason: str
) -> None:
    """Deactivate ``symbol_id`` for good with its last session; its conId's identity ends there."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbols SET active = FALSE, inactive_reason = %s, inactive_since = NOW(),
                               last_session = %s, resolved_at = NOW(), updated_at = NOW()
            WHERE id = %s
            """,
            (reason, last_session, symbol_id),
        )
        if con_id is not None:
            record_identity(conn, symbol_id, con_id)
            cursor.execute(
                """
                UPDATE symbol_identities SET valid_to = %s
                WHERE symbol_id = %s AND con_id = %s AND valid_to IS NULL
                """,
                (last_session, symbol_id, con_id),
            )


def confirm_resolution(conn: Connection, symbol_id: int, con_id: int) -> None:
    """Record that IB resolved ``symbol_id`` to the conId it has: the resolution is fresh again."""
    record_identity(conn, symbol_id, con_id)
    with conn.cursor() as cursor:
        cursor.execute("UPDATE symbols SET resolved_at = NOW() WHERE id = %s", (symbol_id,))


def symbols_resolved_before(conn: Connection, moment: dt.datetime, limit: int) -> list[SymbolRow]:
    """Return at most ``limit`` active symbols last resolved before ``moment`` (or never), oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {_SYMBOL_COLUMNS} FROM symbols"  # noqa: S608 (constant column list)
            " WHERE active AND con_id IS NOT NULL AND (resolved_at IS NULL OR resolved_at < %s)"
            " ORDER BY resolved_at NULLS FIRST, id LIMIT %s",
            (moment, limit),
        )
        return [SymbolRow(*row) for row in cursor.fetchall()]


def symbols_by_id(conn: Connection, symbol_ids: Sequence[int]) -> dict[int, SymbolRow]:
    """Return the symbols rows of ``symbol_ids``, active or not."""
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {_SYMBOL_COLUMNS} FROM symbols WHERE id = ANY(%s)",  # noqa: S608 (constant column list)
            (list(symbol_ids),),
        )
        return {row[0]: SymbolRow(*row) for row in cursor.fetchall()}


def last_stored_sessions(
    conn: Connection, symbol_ids: Sequence[int], before: dt.date | None = None
) -> dict[int, dt.date]:
    """Return each symbol's latest stored daily session (before ``before``, when given)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, MAX(timestamp)::date FROM market_data
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND (%s::date IS NULL OR timestamp < %s::date)
            GROUP BY symbol_id
            """,
            (list(symbol_ids), DAILY_TIMEFRAME, before, before),
        )
        return {symbol_id: day for symbol_id, day in cursor.fetchall() if day is not None}


def last_sessions(conn: Connection, symbol_ids: Sequence[int]) -> dict[int, dt.date]:
    """Return ``symbols.last_session`` of the delisted symbols among ``symbol_ids``."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT id, last_session FROM symbols WHERE id = ANY(%s) AND last_session IS NOT NULL",
            (list(symbol_ids),),
        )
        return dict(cursor.fetchall())


def inactive_symbols(conn: Connection) -> list[dict[str, Any]]:
    """Return every inactive symbol with its reason, last session and since when, newest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            SELECT s.symbol, s.primary_exchange AS exchange, s.con_id, s.inactive_reason AS reason,
                   s.last_session, s.inactive_since,
                   (SELECT COUNT(*) FROM market_data md WHERE md.symbol_id = s.id AND md.timeframe = %s)
                       AS daily_bars
            FROM symbols s WHERE NOT s.active
            ORDER BY s.inactive_since DESC NULLS LAST, s.symbol
            """,
            (DAILY_TIMEFRAME,),
        )
        return cursor.fetchall()


def identity_history(conn: Connection, symbol_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Return the symbols with more than one conId, each conId with its period, oldest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            SELECT s.symbol, s.primary_exchange AS exchange, i.con_id, i.valid_from, i.valid_to
            FROM symbol_identities i JOIN symbols s ON s.id = i.symbol_id
            WHERE (%s::integer[] IS NULL OR i.symbol_id = ANY(%s::integer[]))
              AND i.symbol_id IN (SELECT symbol_id FROM symbol_identities GROUP BY 1 HAVING COUNT(*) > 1)
            ORDER BY s.symbol, i.valid_from NULLS FIRST
            """,
            (
                None if symbol_ids is None else list(symbol_ids),
                None if symbol_ids is None else list(symbol_ids),
            ),
        )
        return cursor.fetchall()


def symbol_id_by_listing(conn: Connection, symbol: str, primary_exchange: str) -> int | None:
    """Return the id of ``symbol`` listed on ``primary_exchange``, or None."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM symbols WHERE symbol = %s AND primary_exchange = %s"
            " ORDER BY active DESC, id LIMIT 1",
            (symbol, primary_exchange),
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def rename_symbol(conn: Connection, symbol: str, primary_exchange: str, new_symbol: str) -> int | None:
    """Give the row of ``symbol`` on ``primary_exchange`` the ticker ``new_symbol``; return its id.

    None, and nothing changed, when it has no row or ``new_symbol`` has one there already.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbols SET symbol = %s, updated_at = NOW()
            WHERE symbol = %s AND primary_exchange = %s
              AND NOT EXISTS (SELECT 1 FROM symbols WHERE symbol = %s AND primary_exchange = %s)
            RETURNING id
            """,
            (new_symbol, symbol, primary_exchange, new_symbol, primary_exchange),
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])
