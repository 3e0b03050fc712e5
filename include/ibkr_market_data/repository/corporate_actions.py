"""``corporate_actions``: what IB did to a symbol (splits, delistings, conId changes) and its evidence.

See docs/corporate-actions.md and docs/schema.md#corporate-actions-0008.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ibkr_market_data.repository.collection_logs import RunContext
from ibkr_market_data.timeframes import TIMEFRAMES


@dataclass(frozen=True)
class BarRevision:
    """One stored bar a run changed: its time, and its prices and volume before and after."""

    timestamp: dt.datetime
    old_open: Decimal
    old_high: Decimal
    old_low: Decimal
    old_close: Decimal
    old_volume: int
    new_open: Decimal
    new_high: Decimal
    new_low: Decimal
    new_close: Decimal
    new_volume: int


def record_corporate_action(
    conn: Connection,
    symbol_id: int,
    kind: str,
    effective_session: dt.date,
    detected_by: str,
    *,
    ratio: Decimal | None = None,
    amount: Decimal | None = None,
    details: Mapping[str, Any] | None = None,
) -> int | None:
    """Record one corporate action; return its id, or None when it was recorded already (its natural key).

    :param kind: one of ``corporate_actions.CORPORATE_ACTION_KINDS`` (the table's CHECK refuses others).
    :param detected_by: how it was found: ``lookback``, ``resolution``, ``universe file`` ...
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO corporate_actions (symbol_id, kind, effective_session, ratio, amount, detected_by,
                                           details)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT ON CONSTRAINT corporate_actions_natural_key DO NOTHING
            RETURNING id
            """,
            (symbol_id, kind, effective_session, ratio, amount, detected_by, Jsonb(dict(details or {}))),
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def update_action_details(conn: Connection, action_id: int, details: Mapping[str, Any]) -> None:
    """Merge ``details`` into the action's ``details`` (keys given replace the stored ones)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE corporate_actions SET details = details || %s WHERE id = %s",
            (Jsonb(dict(details)), action_id),
        )


def mark_rebase_pending(conn: Connection, symbol_id: int, effective_session: dt.date) -> bool:
    """Mark a recorded split's history as to fetch again (IB re-based it again); return whether one was."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE corporate_actions SET details = details || '{"rebase": "pending"}'::jsonb
            WHERE symbol_id = %s AND kind = 'split' AND effective_session = %s
            """,
            (symbol_id, effective_session),
        )
        return cursor.rowcount > 0


def splits_to_rebase(conn: Connection) -> list[dict[str, Any]]:
    """Return the splits whose stored history is not yet re-fetched on the new basis, oldest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            SELECT id, symbol_id, effective_session, ratio, details FROM corporate_actions
            WHERE kind = 'split' AND details ->> 'rebase' = 'pending'
            ORDER BY effective_session, id
            """
        )
        return cursor.fetchall()


def split_price_factors(
    conn: Connection, symbol_ids: Sequence[int], start: dt.date, end: dt.date
) -> dict[int, dict[dt.date, float]]:
    """Return per symbol the splits effective in ``[start, end]``: new price / old price (1 / ratio)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, effective_session, 1 / ratio FROM corporate_actions
            WHERE kind = 'split' AND ratio > 0 AND symbol_id = ANY(%s)
              AND effective_session BETWEEN %s AND %s
            """,
            (list(symbol_ids), start, end),
        )
        found: dict[int, dict[dt.date, float]] = {}
        for symbol_id, session, factor in cursor.fetchall():
            found.setdefault(symbol_id, {})[session] = float(factor)
        return found


def corporate_actions_between(
    conn: Connection, start: dt.date, end: dt.date, kinds: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Return the corporate actions effective in ``[start, end]`` (of ``kinds``, when given), oldest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            SELECT ca.id, s.symbol, s.primary_exchange AS exchange, ca.kind, ca.effective_session,
                   ca.ratio, ca.amount, ca.detected_by, ca.detected_at, ca.details
            FROM corporate_actions ca JOIN symbols s ON s.id = ca.symbol_id
            WHERE ca.effective_session BETWEEN %s AND %s AND (%s::text[] IS NULL OR ca.kind = ANY(%s::text[]))
            ORDER BY ca.effective_session, s.symbol, ca.kind
            """,
            (start, end, None if kinds is None else list(kinds), None if kinds is None else list(kinds)),
        )
        return cursor.fetchall()


def run_revisions(conn: Connection, run: RunContext, timeframe: str) -> dict[int, list[BarRevision]]:
    """Return per symbol the bars ``run`` revised in ``timeframe`` (each one's latest revision), by time."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (symbol_id, timestamp)
                   symbol_id, timestamp, old_open, old_high, old_low, old_close, old_volume,
                   new_open, new_high, new_low, new_close, new_volume
            FROM bar_revisions
            WHERE dag_id = %s AND run_id = %s AND timeframe = %s
            ORDER BY symbol_id, timestamp, id DESC
            """,
            (run.dag_id, run.run_id, timeframe),
        )
        found: dict[int, list[BarRevision]] = {}
        for symbol_id, timestamp, *prices in cursor.fetchall():
            found.setdefault(symbol_id, []).append(BarRevision(timestamp, *prices))
        return found


def stored_timestamps(
    conn: Connection, symbol_id: int, timeframe: str, before: dt.datetime
) -> list[dt.datetime]:
    """Return the timestamps of the symbol's stored ``timeframe`` bars before ``before``, oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT timestamp FROM market_data
            WHERE symbol_id = %s AND timeframe = %s AND timestamp < %s ORDER BY timestamp
            """,
            (symbol_id, timeframe, before),
        )
        return [row[0] for row in cursor.fetchall()]


def stored_timeframes(conn: Connection, symbol_id: int) -> list[str]:
    """Return the timeframes the symbol has bars of."""
    with conn.cursor() as cursor:
        # One probe per known timeframe partition beats a DISTINCT over every bar of the symbol.
        cursor.execute(
            """
            SELECT tf FROM unnest(%s::text[]) AS t(tf)
            WHERE EXISTS (SELECT 1 FROM market_data md WHERE md.symbol_id = %s AND md.timeframe = t.tf)
            """,
            (list(TIMEFRAMES), symbol_id),
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class RunWindow:
    """The latest attempt of one window of a run: a symbol's request, its outcome and its try."""

    symbol_id: int
    timeframe: str
    start_date: dt.datetime
    end_date: dt.datetime
    status: str
    error_code: int | None
    try_number: int


def run_latest_windows(conn: Connection, run: RunContext) -> list[RunWindow]:
    """Return the latest attempt of each (symbol, timeframe, window) of ``run``."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (symbol_id, timeframe, start_date)
                   symbol_id, timeframe, start_date, end_date, status, error_code, try_number
            FROM collection_logs WHERE dag_id = %s AND run_id = %s AND symbol_id IS NOT NULL
            ORDER BY symbol_id, timeframe, start_date, try_number DESC, id DESC
            """,
            (run.dag_id, run.run_id),
        )
        return [RunWindow(*row) for row in cursor.fetchall()]
