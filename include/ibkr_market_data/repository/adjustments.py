"""``adjustment_factors``, ``adjustment_fetches``, dividends in ``corporate_actions``, and adjusted reads.

See docs/corporate-actions.md#adjusted-prices and docs/schema.md#adjusted-prices-0010.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from ibkr_market_data.adjustments import (
    DETECTED_BY,
    AdjustmentCandidate,
    Derivation,
    StoredDay,
    check_adjust_for,
    configured_adjust_for,
)
from ibkr_market_data.contracts import ContractSpec

if TYPE_CHECKING:
    from psycopg import Connection

    from ibkr_market_data.repository.collection_logs import RunContext

#: One bar as ``stored_bars`` returns it, raw or adjusted alike.
BarRow = tuple[
    dt.datetime,
    Decimal | None,
    Decimal | None,
    Decimal | None,
    Decimal | None,
    int | None,
    Decimal | None,
    int | None,
]


def adjustment_candidates(conn: Connection) -> list[AdjustmentCandidate]:
    """Return every active symbol with stored daily bars, with what is known of its adjustments.

    ``stale``: a stored daily bar in the fetched range has no factor or another close than the one its
    factor was derived from (stored or revised after the fetch), or bars reach back before the request.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.id, s.symbol, s.exchange, s.primary_exchange, s.currency, s.sec_type, s.con_id,
                   stored.first_session, fe.fetched_at,
                   fe.symbol_id IS NOT NULL AND (
                       stored.first_session < fe.requested_from
                       OR EXISTS (
                           SELECT 1 FROM market_data md
                           LEFT JOIN adjustment_factors af
                                  ON af.symbol_id = md.symbol_id AND af.session = md.timestamp::date
                           WHERE md.symbol_id = s.id AND md.timeframe = '1day'
                             AND md.timestamp >= fe.first_session AND md.timestamp <= fe.last_session
                             AND af.raw_close IS DISTINCT FROM md.close
                       )
                   ),
                   coalesce(dividends.ex_dates, '{}')
            FROM symbols s
            CROSS JOIN LATERAL (
                SELECT min(md.timestamp)::date AS first_session FROM market_data md
                WHERE md.symbol_id = s.id AND md.timeframe = '1day'
            ) stored
            LEFT JOIN adjustment_fetches fe ON fe.symbol_id = s.id
            LEFT JOIN LATERAL (
                SELECT array_agg(ca.effective_session ORDER BY ca.effective_session) AS ex_dates
                FROM corporate_actions ca WHERE ca.symbol_id = s.id AND ca.kind = 'dividend'
            ) dividends ON TRUE
            WHERE s.active AND stored.first_session IS NOT NULL
            ORDER BY s.priority, s.symbol
            """
        )
        rows = cursor.fetchall()
    return [
        AdjustmentCandidate(
            symbol_id=symbol_id,
            spec=ContractSpec(symbol, exchange, primary_exchange, currency, sec_type, con_id or 0),
            first_session=first_session,
            fetched_at=fetched_at,
            stale=bool(stale),
            ex_dates=tuple(ex_dates),
        )
        for (
            symbol_id,
            symbol,
            exchange,
            primary_exchange,
            currency,
            sec_type,
            con_id,
            first_session,
            fetched_at,
            stale,
            ex_dates,
        ) in rows
    ]


def stored_days(conn: Connection, symbol_id: int, since: dt.date) -> dict[dt.date, StoredDay]:
    """Return the symbol's stored daily closes and volumes from ``since`` on, by session."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT timestamp::date, close, volume FROM market_data"
            " WHERE symbol_id = %s AND timeframe = '1day' AND timestamp >= %s",
            (symbol_id, dt.datetime.combine(since, dt.time())),
        )
        return {session: StoredDay(close, volume) for session, close, volume in cursor.fetchall()}


def store_adjustments(
    conn: Connection,
    symbol_id: int,
    derivation: Derivation,
    requested_from: dt.date,
    time_zone: str,
    run: RunContext | None = None,
) -> None:
    """Replace the symbol's factors with ``derivation``'s, record its dividends and the fetch.

    Factors are derived data, so the latest fetch replaces them all; dividends are UPSERTed on
    (symbol, kind, ex-date), never deleted.

    :param requested_from: the first date the request reached back to.
    :param time_zone: the exchange's zone, which names an intraday bar's session.
    :param run: the run that fetched, recorded with the fetch.
    """
    factors = derivation.factors
    if not factors:
        return
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM adjustment_factors WHERE symbol_id = %s", (symbol_id,))
        cursor.executemany(
            """
            INSERT INTO adjustment_factors
                (symbol_id, session, factor, source, fetched_at, volume_factor, raw_close, adjusted_close)
            VALUES (%s, %s, %s, %s, NOW(), %s, %s, %s)
            """,
            [
                (
                    symbol_id,
                    factor.session,
                    factor.factor,
                    DETECTED_BY,
                    factor.volume_factor,
                    factor.raw_close,
                    factor.adjusted_close,
                )
                for factor in factors
            ],
        )
        cursor.executemany(
            """
            INSERT INTO corporate_actions (symbol_id, kind, effective_session, amount, detected_by, details)
            VALUES (%s, 'dividend', %s, %s, %s, %s)
            ON CONFLICT ON CONSTRAINT corporate_actions_natural_key DO UPDATE
            SET amount = EXCLUDED.amount, details = EXCLUDED.details
            """,
            [
                (
                    symbol_id,
                    dividend.ex_date,
                    dividend.amount,
                    DETECTED_BY,
                    Jsonb(
                        {
                            "factor_step": str(dividend.factor_step),
                            "session_before": dividend.session_before.isoformat(),
                            "close_before": str(dividend.close_before),
                            "basis": "IB's share basis on the fetch date",
                            "price_quantum": str(derivation.price_quantum),
                        }
                    ),
                )
                for dividend in derivation.dividends
            ],
        )
        cursor.execute(
            """
            INSERT INTO adjustment_fetches (symbol_id, fetched_at, requested_from, first_session,
                                            last_session, time_zone, sessions, dividends, dag_id, run_id)
            VALUES (%s, NOW(), %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (symbol_id) DO UPDATE
            SET fetched_at = EXCLUDED.fetched_at, requested_from = EXCLUDED.requested_from,
                first_session = EXCLUDED.first_session, last_session = EXCLUDED.last_session,
                time_zone = EXCLUDED.time_zone, sessions = EXCLUDED.sessions,
                dividends = EXCLUDED.dividends, dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id
            """,
            (
                symbol_id,
                requested_from,
                factors[0].session,
                factors[-1].session,
                time_zone,
                len(factors),
                len(derivation.dividends),
                run.dag_id if run else None,
                run.run_id if run else None,
            ),
        )


def stored_bars(
    conn: Connection,
    symbol_id: int,
    timeframe: str,
    start: dt.datetime,
    end: dt.datetime,
    adjusted: bool = False,
    adjust_for: Sequence[str] | None = None,
) -> list[BarRow]:
    """Return the stored bars of ``symbol_id`` from ``start`` to ``end`` (inclusive), raw or adjusted.

    Rows are (timestamp, open, high, low, close, volume, wap, bar_count), oldest first, the same rows
    either way; an adjusted bar whose session has no known factor has NULL prices and volume.

    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :param start: the first timestamp, as stored (a session's midnight, or a bar's start in UTC).
    :param end: the last timestamp.
    :param adjusted: adjusted prices (``adjusted_market_data``) instead of the stored ones.
    :param adjust_for: what ``adjusted`` accounts for; None: the ``IBKR_ADJUST_FOR`` setting.
    :raises UnknownCorporateActionKindError: ``adjust_for`` or the setting names a kind it cannot.
    """
    if not adjusted:
        query = (
            'SELECT "timestamp", open, high, low, close, volume, wap, bar_count FROM market_data'
            " WHERE symbol_id = %s AND timeframe = %s AND timestamp BETWEEN %s AND %s ORDER BY timestamp"
        )
        params: tuple[object, ...] = (symbol_id, timeframe, start, end)
    else:
        kinds = configured_adjust_for() if adjust_for is None else check_adjust_for(adjust_for)
        query = (
            'SELECT "timestamp", open, high, low, close, volume, wap, bar_count'
            " FROM adjusted_market_data(%s::text[])"
            ' WHERE symbol_id = %s AND timeframe = %s AND "timestamp" BETWEEN %s AND %s ORDER BY "timestamp"'
        )
        params = (list(kinds), symbol_id, timeframe, start, end)
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()
