"""``data_quality_issues``: what the quality checks found, and the stored bars and revisions they read.

See docs/data-quality.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from psycopg import Connection

from ibkr_market_data.quality import Finding, IntradaySession, StoredBar
from ibkr_market_data.repository.bars import intraday_session_totals
from ibkr_market_data.repository.collection_logs import RunContext
from ibkr_market_data.repository.no_data import settled_short_sessions


def bars_for_checks(
    conn: Connection, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[int, list[StoredBar]]:
    """Return, per symbol, its ``timeframe`` bars with a session in ``[start, end]``, oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT symbol_id, timestamp::date, close, volume, high, low FROM market_data
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND timestamp >= %s AND timestamp < %s
            ORDER BY symbol_id, timestamp
            """,
            (list(symbol_ids), timeframe, start, end + dt.timedelta(days=1)),
        )
        found: dict[int, list[StoredBar]] = {}
        for symbol_id, session, close, volume, high, low in cursor.fetchall():
            found.setdefault(symbol_id, []).append(StoredBar(session, close, volume, high, low))
        return found


def intraday_sessions(
    conn: Connection,
    timeframe: str,
    scheduled: Mapping[int, Mapping[dt.date, int]],
    zones: Mapping[int, str],
) -> dict[int, dict[dt.date, IntradaySession]]:
    """Return, per symbol, each session of ``scheduled`` with its stored ``timeframe`` bars summed up.

    :param scheduled: per symbol id, the sessions to read and the bars each holds by the schedule.
    :param zones: each symbol's exchange time zone, which names an intraday bar's session.
    """
    days = [day for symbol_id, sessions in scheduled.items() if symbol_id in zones for day in sessions]
    if not days:
        return {}
    found: dict[int, dict[dt.date, IntradaySession]] = {}
    settled = settled_short_sessions(conn, list(zones), timeframe, min(days), max(days))
    for symbol_id, session, high, low, volume, count in intraday_session_totals(
        conn, zones, timeframe, min(days), max(days)
    ):
        expected = scheduled.get(symbol_id, {}).get(session)
        if expected is not None:
            settled_bars = settled.get(symbol_id, {}).get(session)
            whole = settled_bars is not None and count >= settled_bars
            found.setdefault(symbol_id, {})[session] = IntradaySession(
                high, low, int(volume), count, expected, settled=whole
            )
    return found


def revision_ratios(
    conn: Connection, symbol_ids: Sequence[int], timeframe: str, start: dt.date, end: dt.date
) -> dict[int, dict[dt.date, float]]:
    """Return, per symbol and session in ``[start, end]``, new close / old close of its latest revision."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (symbol_id, timestamp) symbol_id, timestamp::date, new_close / old_close
            FROM bar_revisions
            WHERE symbol_id = ANY(%s) AND timeframe = %s AND timestamp >= %s AND timestamp < %s
              AND old_close > 0
            ORDER BY symbol_id, timestamp, id DESC
            """,
            (list(symbol_ids), timeframe, start, end + dt.timedelta(days=1)),
        )
        found: dict[int, dict[dt.date, float]] = {}
        for symbol_id, session, ratio in cursor.fetchall():
            found.setdefault(symbol_id, {})[session] = float(ratio)
        return found


@dataclass(frozen=True)
class RecordedFindings:
    """What recording a run's findings changed: new ones, known ones, and how many were resolved."""

    new: list[Finding]  # first seen now, or seen again after they were resolved
    known: list[Finding]  # open already, from an earlier run
    resolved: int  # open findings of the checked range no longer found


def record_quality_findings(
    conn: Connection,
    run: RunContext,
    findings: Sequence[Finding],
    checked: Mapping[int, Collection[dt.date]],
    timeframe: str,
) -> RecordedFindings:
    """Upsert ``findings`` (one row per symbol, timeframe, session and check), resolve the vanished ones.

    A rerun with the same findings changes nothing but ``last_seen`` and ``last_run_id``.

    :param checked: the sessions checked per symbol id: an open finding there that the checks no
        longer report (IB corrected the bar, the session was healed) gets ``resolved_at``.
    """
    new: list[Finding] = []
    known: list[Finding] = []
    with conn.cursor() as cursor:
        for finding in findings:
            cursor.execute(
                """
                INSERT INTO data_quality_issues
                    (symbol_id, timeframe, timestamp, check_name, severity, detail,
                     dag_id, run_id, last_run_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (symbol_id, timeframe, timestamp, check_name) DO UPDATE SET
                    severity = EXCLUDED.severity,
                    detail = EXCLUDED.detail,
                    last_run_id = EXCLUDED.last_run_id,
                    last_seen = NOW(),
                    resolved_at = NULL
                RETURNING (xmax = 0) OR (
                    SELECT resolved_at IS NOT NULL FROM data_quality_issues old
                    WHERE old.id = data_quality_issues.id
                ) AS new
                """,
                (
                    finding.symbol_id,
                    timeframe,
                    _timestamp(finding.session),
                    str(finding.check),
                    str(finding.severity),
                    finding.detail,
                    run.dag_id,
                    run.run_id,
                    run.run_id,
                ),
            )
            row = cursor.fetchone()
            (new if row and row[0] else known).append(finding)
        cursor.execute(
            """
            UPDATE data_quality_issues SET resolved_at = NOW()
            WHERE timeframe = %s AND resolved_at IS NULL
              AND (symbol_id, timestamp) IN (SELECT * FROM unnest(%s::integer[], %s::timestamp[]))
              AND (symbol_id, timestamp, check_name) NOT IN (
                  SELECT * FROM unnest(%s::integer[], %s::timestamp[], %s::text[])
              )
            """,
            (
                timeframe,
                [symbol_id for symbol_id, sessions in checked.items() for _ in sessions],
                [_timestamp(session) for sessions in checked.values() for session in sessions],
                [finding.symbol_id for finding in findings],
                [_timestamp(finding.session) for finding in findings],
                [str(finding.check) for finding in findings],
            ),
        )
        resolved = cursor.rowcount
    return RecordedFindings(new=new, known=known, resolved=resolved)


def run_quality_findings(conn: Connection, run_id: str) -> list[tuple[str, dt.date, str, str, str]]:
    """Return the open findings run ``run_id`` last saw: (symbol, session, check, severity, detail)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.symbol, q.timestamp::date, q.check_name, q.severity, q.detail
            FROM data_quality_issues q JOIN symbols s ON s.id = q.symbol_id
            WHERE q.last_run_id = %s AND q.resolved_at IS NULL
            ORDER BY q.severity, s.symbol, q.timestamp, q.check_name
            """,
            (run_id,),
        )
        return cursor.fetchall()


def _timestamp(session: dt.date) -> dt.datetime:
    """Return the ``timestamp`` a daily bar of ``session`` is stored at."""
    return dt.datetime.combine(session, dt.time())
