"""Sessions IB answered without all their bars, and when IB confirmed them; a backfill's bookkeeping.

``no_data_sessions``, ``short_sessions``, ``symbols.first_available_date`` and a backfill run's totals.

See docs/backfill.md#no-data and docs/intraday.md#halts-and-quiet-minutes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from psycopg import Connection

from ibkr_market_data.repository.collection_logs import RunContext


def no_data_session_dates(
    conn: Connection,
    symbol_ids: Sequence[int],
    timeframe: str,
    start: dt.date,
    end: dt.date,
    settled_only: bool = True,
) -> dict[int, set[dt.date]]:
    """Return, per symbol, the sessions in ``[start, end]`` settled as having no data at IB.

    One empty answer may be IB's passing trouble, so such a session stays missing and is asked again.

    :param settled_only: keep only sessions IB confirmed (``settled_at``: left out again, by an answer
        holding a later session or on another day); False for any recorded.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, session FROM no_data_sessions
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND session BETWEEN %s AND %s
              AND (NOT %s OR settled_at IS NOT NULL)
            """,
            (list(symbol_ids), timeframe, start, end, settled_only),
        )
        found: dict[int, set[dt.date]] = {}
        for symbol_id, session in cursor.fetchall():
            found.setdefault(symbol_id, set()).add(session)
        return found


def no_data_recorded_by_run(
    conn: Connection, symbol_id: int, timeframe: str, start: dt.date, end: dt.date, run: RunContext
) -> bool:
    """Check whether ``run`` (any of its tries) recorded no data for a session of ``[start, end]``.

    A row names the run that last saw the session without data, so the daily run asks IB again
    after a 162 only once: not when an earlier try of the same run already did.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (
                SELECT 1 FROM no_data_sessions
                WHERE symbol_id = %s AND timeframe = %s AND session BETWEEN %s AND %s
                  AND dag_id = %s AND run_id = %s
            )
            """,
            (symbol_id, timeframe, start, end, run.dag_id, run.run_id),
        )
        found = cursor.fetchone()
    return bool(found and found[0])


def short_session_recorded_by_run(
    conn: Connection, symbol_id: int, timeframe: str, session: dt.date, run: RunContext
) -> bool:
    """Check whether ``run`` (any of its tries) recorded ``session`` answered with fewer bars than scheduled.

    The daily run asks IB again for a session whose answer stops short of its close only once: not
    when an earlier try of the same run already recorded the short answer (it asked twice then).
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (
                SELECT 1 FROM short_sessions
                WHERE symbol_id = %s AND timeframe = %s AND session = %s AND dag_id = %s AND run_id = %s
            )
            """,
            (symbol_id, timeframe, session, run.dag_id, run.run_id),
        )
        found = cursor.fetchone()
    return bool(found and found[0])


def record_no_data_sessions(
    conn: Connection,
    symbol_id: int,
    timeframe: str,
    sessions: Iterable[dt.date],
    reason: str,
    run: RunContext,
    confirmed: bool = False,
    past_them: bool = False,
) -> int:
    """Record sessions IB sent no bar for and return how many; one seen again keeps ``first_seen``.

    A session is settled (``settled_at``) once IB confirms it: at once when ``confirmed``; else when
    IB leaves it out again, in an answer that went past it or on a later day than first.

    :param reason: why the sessions have no data; a session seen again takes the new one.
    :param confirmed: IB's head timestamp puts them before the listing.
    :param past_them: the answer holds a bar of a later session, so it was not cut short before them.
    """
    rows = [
        (symbol_id, timeframe, session, reason, run.dag_id, run.run_id, confirmed, past_them)
        for session in sorted(set(sessions))
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO no_data_sessions (symbol_id, timeframe, session, reason, dag_id, run_id, settled_at)
            VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s THEN NOW() END)
            ON CONFLICT (symbol_id, timeframe, session) DO UPDATE SET
                reason = EXCLUDED.reason, last_seen = NOW(),
                dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id,
                settled_at = COALESCE(
                    no_data_sessions.settled_at,
                    EXCLUDED.settled_at,
                    CASE WHEN %s OR no_data_sessions.first_seen::date < NOW()::date THEN NOW() END
                )
            """,
            rows,
        )
    return len(rows)


def record_short_sessions(
    conn: Connection,
    symbol_id: int,
    timeframe: str,
    sessions: Mapping[dt.date, tuple[int, int, bool]],
    run: RunContext,
) -> None:
    """Record intraday sessions IB answered with fewer bars than their schedule holds.

    A session is settled (``settled_at``) when an answer agrees with the stored daily bar and the
    answer before it held as many bars; a different count starts over.

    :param sessions: per session, (bars answered, bars scheduled, whether they add up to the daily bar).
    """
    rows = [
        (symbol_id, timeframe, session, bars, scheduled, agrees, run.dag_id, run.run_id)
        for session, (bars, scheduled, agrees) in sorted(sessions.items())
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO short_sessions
                (symbol_id, timeframe, session, bars, scheduled, agrees_with_daily, dag_id, run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (symbol_id, timeframe, session) DO UPDATE SET
                answers = CASE WHEN short_sessions.bars = EXCLUDED.bars
                               THEN short_sessions.answers + 1 ELSE 1 END,
                settled_at = CASE
                    WHEN short_sessions.bars <> EXCLUDED.bars OR NOT EXCLUDED.agrees_with_daily THEN NULL
                    ELSE COALESCE(short_sessions.settled_at, NOW())
                END,
                bars = EXCLUDED.bars, scheduled = EXCLUDED.scheduled,
                agrees_with_daily = EXCLUDED.agrees_with_daily, last_seen = NOW(),
                dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id
            """,
            rows,
        )


def settled_short_sessions(
    conn: Connection, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[int, dict[dt.date, int]]:
    """Return, per symbol, the settled short sessions in ``[start, end]`` and the bars IB answered."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, session, bars FROM short_sessions
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND session BETWEEN %s AND %s
              AND settled_at IS NOT NULL
            """,
            (list(symbol_ids), timeframe, start, end),
        )
        found: dict[int, dict[dt.date, int]] = {}
        for symbol_id, session, bars in cursor.fetchall():
            found.setdefault(symbol_id, {})[session] = bars
        return found


def first_available_dates(conn: Connection, symbol_ids: Sequence[int]) -> dict[int, dt.date]:
    """Return the first available date (IB's head timestamp) of those of ``symbol_ids`` that have one."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT id, first_available_date FROM symbols"
            " WHERE id = ANY(%s) AND first_available_date IS NOT NULL",
            (list(symbol_ids),),
        )
        return {symbol_id: day for symbol_id, day in cursor.fetchall()}


def set_first_available_date(conn: Connection, symbol_id: int, day: dt.date) -> None:
    """Store ``day``, IB's head timestamp, as the symbol's first available date."""
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE symbols SET first_available_date = %s, updated_at = NOW() WHERE id = %s", (day, symbol_id)
        )


def run_backfill_totals(conn: Connection, dag_id: str, run_id: str) -> dict[str, int]:
    """Return what one backfill run did: requests, bars collected, revisions and no-data sessions recorded."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT (SELECT COALESCE(SUM(requests_sent), 0) FROM collection_logs
                    WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s),
                   (SELECT COALESCE(SUM(records_collected), 0) FROM collection_logs
                    WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s),
                   (SELECT COUNT(*) FROM bar_revisions WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s),
                   (SELECT COUNT(*) FROM no_data_sessions WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s)
            """,
            {"dag_id": dag_id, "run_id": run_id},
        )
        totals = cursor.fetchone()
        assert totals is not None  # a SELECT without FROM returns its one row
    requests, bars, revisions, no_data = totals
    return {
        "requests_sent": int(requests),
        "bars_collected": int(bars),
        "bars_revised": int(revisions),
        "no_data_sessions": int(no_data),
    }
