"""``run_metrics``, ``freshness_alerts`` and what the operations views read: coverage, runs, failures.

Reads return plain rows; writes are UPSERTs on their natural key and leave the commit to the caller.
See docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from psycopg import Connection, Cursor

from ibkr_market_data.bars import DAILY_TIMEFRAME

#: ``run_metrics.exchange`` of the row that covers the whole run.
ALL_EXCHANGES = "ALL"
#: The latest runs are looked for among attempts started this many days before the newest one.
RECENT_RUN_DAYS = 45


def _day_bounds(start: dt.date, end: dt.date) -> dict[str, object]:
    """Return ``start`` and ``end`` as the timestamp and date parameters the range queries bind."""
    return {
        "start": dt.datetime.combine(start, dt.time()),
        "end": dt.datetime.combine(end, dt.time()),
        "start_day": start,
        "end_day": end,
    }


def _without_jit(cursor: Cursor) -> None:
    """Turn PostgreSQL's JIT off for this transaction.

    The range queries' plans are costed high enough to trigger it, and compiling took ~0.45 s of a
    ~0.06 s query (measured on a year of 5,000 symbols).
    """
    cursor.execute("SET LOCAL jit = off")


def _rows(cursor: Cursor) -> list[dict[str, Any]]:
    """Return the cursor's rows as dicts by column name."""
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# -- coverage ---------------------------------------------------------------------------------


def active_symbol_counts(conn: Connection) -> list[tuple[str, dt.date | None, int]]:
    """Count the active symbols per (listing exchange, first available date), for the expected counts."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT primary_exchange, first_available_date, COUNT(*) FROM symbols
            WHERE active GROUP BY primary_exchange, first_available_date
            """
        )
        return [(exchange, first, int(count)) for exchange, first, count in cursor.fetchall()]


#: ``missing``: the (day, symbol_id) pairs without a bar to expect, ``kind`` ``no_data`` (IB sent none,
#: settled in ``no_data_sessions`` (``settled_at``: IB confirmed it; one empty answer is not enough) or
#: else ``failed`` (an attempt whose window covers the day failed). Stored bars are not looked at: a
#: caller lets them win. Named parameters: ``timeframe`` and those of ``_day_bounds``. Also read by
#: ``repository.reads.session_outcomes``, so the dashboard and the read API mean the same thing.
MISSING_SESSIONS = """
    no_data AS (
        -- Settled only, as repository.no_data_session_dates has it for the planner.
        SELECT n.session AS day, n.symbol_id FROM no_data_sessions n
        WHERE n.timeframe = %(timeframe)s AND n.session BETWEEN %(start_day)s AND %(end_day)s
          AND n.settled_at IS NOT NULL
    ),
    failed AS (
        SELECT DISTINCT covered.day::date AS day, cl.symbol_id FROM collection_logs cl
        CROSS JOIN LATERAL generate_series(
            GREATEST(cl.start_date, %(start)s), LEAST(cl.end_date, %(end)s), interval '1 day'
        ) AS covered(day)
        WHERE cl.status = 'failed' AND cl.timeframe = %(timeframe)s
          AND cl.end_date >= %(start)s AND cl.start_date <= %(end)s
    ),
    missing AS (
        SELECT day, symbol_id, 'no_data' AS kind FROM no_data
        UNION ALL
        SELECT f.day, f.symbol_id, 'failed' FROM failed f
        WHERE NOT EXISTS (SELECT 1 FROM no_data n WHERE n.day = f.day AND n.symbol_id = f.symbol_id)
    )
"""

#: The days each symbol is expected (as ``expected_symbols`` says); no membership row: every day.
_EXPECTED_PERIODS = """
    expected_periods AS (
        SELECT s.id AS symbol_id,
               COALESCE(um.valid_from, '-infinity'::date) AS first_day,
               LEAST(COALESCE(um.valid_to, 'infinity'::date),
                     COALESCE(s.last_session, 'infinity'::date)) AS last_day
        FROM symbols s LEFT JOIN universe_memberships um ON um.symbol_id = s.id
        WHERE s.active OR s.last_session IS NOT NULL
    ),"""

#: Parameters: those of ``MISSING_SESSIONS``.
_COVERAGE_COUNTS = (  # constant fragments only: values are bound
    "WITH"  # noqa: S608
    + _EXPECTED_PERIODS
    + MISSING_SESSIONS
    + """
    SELECT md.timestamp::date, s.primary_exchange, 'stored', COUNT(*)
    FROM market_data md JOIN symbols s ON s.id = md.symbol_id
    WHERE md.timeframe = %(timeframe)s AND md.timestamp BETWEEN %(start)s AND %(end)s
      AND EXISTS (SELECT 1 FROM expected_periods p WHERE p.symbol_id = md.symbol_id
                  AND md.timestamp::date BETWEEN p.first_day AND p.last_day)
    GROUP BY 1, 2
    UNION ALL
    SELECT m.day, s.primary_exchange, m.kind, COUNT(*)
    FROM missing m JOIN symbols s ON s.id = m.symbol_id
     AND EXISTS (SELECT 1 FROM expected_periods p WHERE p.symbol_id = m.symbol_id
                 AND m.day BETWEEN p.first_day AND p.last_day)
    -- A lateral probe, one index lookup per missing pair: as NOT EXISTS the planner, which
    -- cannot estimate generate_series, hashes the whole of market_data instead.
    LEFT JOIN LATERAL (
        SELECT 1 AS found FROM market_data md WHERE md.symbol_id = m.symbol_id
        AND md.timeframe = %(timeframe)s AND md.timestamp = m.day::timestamp LIMIT 1
    ) bar ON TRUE
    WHERE bar.found IS NULL
    GROUP BY 1, 2, 3
"""
)


def expected_symbols(
    conn: Connection,
) -> list[tuple[str, dt.date | None, tuple[tuple[dt.date | None, dt.date | None], ...], int]]:
    """Count the symbols expected per (listing exchange, first available date, periods they are expected in).

    A period is (first day, last day), None for open; no period: always. Active symbols are expected
    inside their universe memberships, delisted ones up to their last session, the others never.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.id, s.primary_exchange, s.first_available_date, s.last_session,
                   um.valid_from, um.valid_to
            FROM symbols s LEFT JOIN universe_memberships um ON um.symbol_id = s.id
            WHERE s.active OR s.last_session IS NOT NULL
            ORDER BY s.id, um.valid_from NULLS FIRST
            """
        )
        symbols: dict[int, tuple[str, dt.date | None, list[tuple[dt.date | None, dt.date | None]]]] = {}
        for symbol_id, exchange, first, last_session, valid_from, valid_to in cursor.fetchall():
            _, _, periods = symbols.setdefault(symbol_id, (exchange, first, []))
            last_day = min((day for day in (valid_to, last_session) if day is not None), default=None)
            periods.append((valid_from, last_day))
    counts: dict[tuple[str, dt.date | None, tuple[tuple[dt.date | None, dt.date | None], ...]], int] = {}
    for exchange, first, periods in symbols.values():
        key = (exchange, first, tuple(periods) if periods != [(None, None)] else ())
        counts[key] = counts.get(key, 0) + 1
    return [(exchange, first, periods, count) for (exchange, first, periods), count in counts.items()]


def coverage_counts(
    conn: Connection, start: dt.date, end: dt.date, timeframe: str = "1day"
) -> dict[tuple[dt.date, str], dict[str, int]]:
    """Count the expected symbols' ``stored``, ``no_data`` and ``failed`` sessions per (date, exchange).

    Expected as ``expected_symbols`` says: active inside the universe memberships, delisted up to the
    last session.

    A (symbol, session) counts once, in the first of: stored (a bar exists), no data (settled in
    ``no_data_sessions``: IB answered empty on two different days, as the planner requires), failed
    (an attempt whose window covers the session failed, and nothing was stored since). One empty
    answer counts as none of these: the session is missing until a later run asks again.
    """
    params = {"timeframe": timeframe, **_day_bounds(start, end)}
    with conn.cursor() as cursor:
        _without_jit(cursor)
        cursor.execute(_COVERAGE_COUNTS, params)
        counts: dict[tuple[dt.date, str], dict[str, int]] = {}
        for day, exchange, kind, count in cursor.fetchall():
            counts.setdefault((day, exchange), {})[kind] = int(count)
        return counts


# -- runs, failures, metrics ------------------------------------------------------------------


def latest_runs(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """Return the latest runs in ``collection_logs``: when, how long, and their symbols' latest statuses.

    Only runs within ``RECENT_RUN_DAYS`` of the newest attempt are looked at.
    """
    with conn.cursor() as cursor:
        _without_jit(cursor)
        cursor.execute(
            """
            WITH runs AS (
                -- Runs with attempts in the last RECENT_RUN_DAYS of activity: a range on the
                -- started_at index instead of grouping every attempt ever made.
                SELECT dag_id, run_id, MIN(started_at) AS started_at, MAX(completed_at) AS finished_at
                FROM collection_logs
                WHERE run_id IS NOT NULL AND started_at >= (
                    SELECT MAX(started_at) - make_interval(days => %(days)s) FROM collection_logs
                )
                GROUP BY dag_id, run_id ORDER BY MIN(started_at) DESC LIMIT %(limit)s
            ),
            latest AS (
                -- Per run (a lateral join, so each run is read through the (dag_id, run_id) index).
                SELECT r.dag_id, r.run_id, one.status FROM runs r CROSS JOIN LATERAL (
                    SELECT DISTINCT ON (cl.symbol_id, cl.start_date) cl.status FROM collection_logs cl
                    WHERE cl.dag_id = r.dag_id AND cl.run_id = r.run_id
                    ORDER BY cl.symbol_id, cl.start_date, cl.try_number DESC, cl.id DESC
                ) one
            )
            SELECT r.dag_id, r.run_id, r.started_at, r.finished_at,
                   EXTRACT(EPOCH FROM r.finished_at - r.started_at) AS duration_seconds,
                   COUNT(*) FILTER (WHERE l.status = 'completed') AS completed,
                   COUNT(*) FILTER (WHERE l.status = 'failed') AS failed,
                   COUNT(*) FILTER (WHERE l.status = 'no_data') AS no_data,
                   COUNT(*) FILTER (WHERE l.status = 'skipped') AS skipped,
                   COUNT(*) FILTER (WHERE l.status = 'pending') AS pending
            FROM runs r JOIN latest l ON l.dag_id = r.dag_id AND l.run_id = r.run_id
            GROUP BY r.dag_id, r.run_id, r.started_at, r.finished_at
            ORDER BY r.started_at DESC
            """,
            {"limit": limit, "days": RECENT_RUN_DAYS},
        )
        rows = _rows(cursor)
    for row in rows:
        row["outcome"] = "failed" if row["failed"] else "running" if row["pending"] else "success"
        row["duration_seconds"] = (
            float(row["duration_seconds"]) if row["duration_seconds"] is not None else None
        )
    return rows


def failures(conn: Connection, start: dt.date, end: dt.date, limit: int = 200) -> list[dict[str, Any]]:
    """Return the failed attempts whose window ends in ``start..end``, newest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.symbol, s.primary_exchange AS exchange, cl.end_date::date AS date,
                   cl.start_date::date AS first_date, cl.error_code, cl.error_message,
                   cl.try_number, cl.dag_id, cl.run_id, cl.completed_at
            FROM collection_logs cl JOIN symbols s ON s.id = cl.symbol_id
            WHERE cl.status = 'failed' AND cl.end_date BETWEEN %(start)s AND %(end)s
            ORDER BY cl.completed_at DESC NULLS LAST, cl.id DESC LIMIT %(limit)s
            """,
            {**_day_bounds(start, end), "limit": limit},
        )
        return _rows(cursor)


def record_request_seconds(conn: Connection, log_id: int, seconds: float) -> None:
    """Store how long the attempt's IB request took (in the attempt's transaction)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE collection_logs SET request_seconds = %s WHERE id = %s", (float(seconds), log_id)
        )


def record_run_metrics(conn: Connection, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Compute one run's metrics from its attempts, per listing exchange and ``ALL``; UPSERT and return them.

    requests: IB requests sent; bars: bars collected; retries: attempts after a symbol's first;
    latency p50/p95: of the attempts' request seconds; wall: first attempt start to last finish.
    Counts of completed / failed / no data / skipped are of each symbol's latest attempt.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            WITH attempts AS (
                SELECT cl.*, s.primary_exchange AS exchange FROM collection_logs cl
                JOIN symbols s ON s.id = cl.symbol_id
                WHERE cl.dag_id = %(dag_id)s AND cl.run_id = %(run_id)s
            ),
            latest AS (
                SELECT DISTINCT ON (symbol_id, start_date) exchange, status FROM attempts
                ORDER BY symbol_id, start_date, try_number DESC, id DESC
            ),
            per_attempt AS (
                SELECT COALESCE(exchange, %(all)s) AS exchange,
                       COUNT(DISTINCT (symbol_id, start_date)) AS targets,
                       COUNT(*) FILTER (WHERE status <> 'skipped') AS attempts,
                       COALESCE(SUM(requests_sent), 0) AS requests,
                       COALESCE(SUM(records_collected), 0) AS bars,
                       COUNT(*) FILTER (WHERE try_number > 1) AS retries,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY request_seconds) AS latency_p50,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY request_seconds) AS latency_p95,
                       MIN(started_at) AS started_at, MAX(completed_at) AS finished_at
                FROM attempts GROUP BY GROUPING SETS ((exchange), ())
            ),
            per_status AS (
                SELECT COALESCE(exchange, %(all)s) AS exchange,
                       COUNT(*) FILTER (WHERE status = 'completed') AS completed,
                       COUNT(*) FILTER (WHERE status = 'failed') AS failed,
                       COUNT(*) FILTER (WHERE status = 'no_data') AS no_data,
                       COUNT(*) FILTER (WHERE status = 'skipped') AS skipped
                FROM latest GROUP BY GROUPING SETS ((exchange), ())
            )
            INSERT INTO run_metrics (dag_id, run_id, exchange, symbols, attempts, requests, bars, retries,
                                     completed, failed, no_data, skipped, latency_p50, latency_p95,
                                     started_at, finished_at, wall_seconds)
            SELECT %(dag_id)s, %(run_id)s, a.exchange, a.targets, a.attempts, a.requests, a.bars, a.retries,
                   st.completed, st.failed, st.no_data, st.skipped, a.latency_p50, a.latency_p95,
                   a.started_at, a.finished_at, EXTRACT(EPOCH FROM a.finished_at - a.started_at)
            FROM per_attempt a JOIN per_status st ON st.exchange = a.exchange
            WHERE a.targets > 0
            ON CONFLICT (dag_id, run_id, exchange) DO UPDATE SET
                symbols = EXCLUDED.symbols, attempts = EXCLUDED.attempts, requests = EXCLUDED.requests,
                bars = EXCLUDED.bars, retries = EXCLUDED.retries, completed = EXCLUDED.completed,
                failed = EXCLUDED.failed, no_data = EXCLUDED.no_data, skipped = EXCLUDED.skipped,
                latency_p50 = EXCLUDED.latency_p50, latency_p95 = EXCLUDED.latency_p95,
                started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
                wall_seconds = EXCLUDED.wall_seconds, recorded_at = NOW()
            RETURNING *
            """,
            {"dag_id": dag_id, "run_id": run_id, "all": ALL_EXCHANGES},
        )
        return _rows(cursor)


def run_metrics(
    conn: Connection,
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: int = 50,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Return stored run metrics, newest run first, the ``ALL`` row before a run's exchanges.

    :param start: the first start date of the runs returned; None for no bound.
    :param end: the last start date of the runs returned, inclusive; None for no bound.
    :param limit: rows at most, not runs.
    :param dag_id: only the runs of this DAG.
    :param run_id: only this run.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT * FROM run_metrics
            WHERE (%(start)s::timestamp IS NULL OR started_at >= %(start)s::timestamp)
              AND (%(end)s::timestamp IS NULL OR started_at < %(end)s::timestamp + interval '1 day')
              AND (%(dag_id)s::text IS NULL OR dag_id = %(dag_id)s::text)
              AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s::text)
            ORDER BY MIN(started_at) OVER (PARTITION BY dag_id, run_id) DESC NULLS LAST, dag_id, run_id,
                     exchange = %(all)s DESC, exchange
            LIMIT %(limit)s
            """,
            {
                "start": dt.datetime.combine(start, dt.time()) if start else None,
                "end": dt.datetime.combine(end, dt.time()) if end else None,
                "dag_id": dag_id,
                "run_id": run_id,
                "all": ALL_EXCHANGES,
                "limit": limit,
            },
        )
        return _rows(cursor)


# -- one symbol -------------------------------------------------------------------------------


def symbol_row(conn: Connection, symbol: str) -> dict[str, Any] | None:
    """Return the symbols row of ``symbol`` and its latest daily bar's date; None when there is none.

    A symbol listed on several exchanges returns its first active listing.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT id, symbol, primary_exchange AS exchange, currency, sec_type, con_id, active,
                   priority, name, first_available_date, inactive_reason,
                   (SELECT MAX(md.timestamp)::date FROM market_data md
                    WHERE md.symbol_id = s.id AND md.timeframe = %s) AS latest_bar
            FROM symbols s WHERE symbol = %s ORDER BY active DESC, id LIMIT 1
            """,
            (DAILY_TIMEFRAME, symbol),
        )
        rows = _rows(cursor)
        return rows[0] if rows else None


def symbol_bars(
    conn: Connection, symbol_id: int, start: dt.date, end: dt.date, timeframe: str = "1day"
) -> list[dict[str, Any]]:
    """Return the symbol's ``timeframe`` bars from ``start`` to ``end``, oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT timestamp::date AS date, open, high, low, close, volume FROM market_data
            WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s
              AND timestamp BETWEEN %(start)s AND %(end)s
            ORDER BY timestamp
            """,
            {"symbol_id": symbol_id, "timeframe": timeframe, **_day_bounds(start, end)},
        )
        return _rows(cursor)


def symbol_attempts(conn: Connection, symbol_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Return the symbol's latest ``limit`` attempts, newest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT start_date::date AS first_date, end_date::date AS date, status, error_code,
                   error_message, try_number, records_collected, requests_sent, request_seconds,
                   dag_id, run_id, started_at, completed_at
            FROM collection_logs WHERE symbol_id = %s ORDER BY id DESC LIMIT %s
            """,
            (symbol_id, limit),
        )
        return _rows(cursor)


# -- freshness alerts -------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertedGap:
    """A trading date of an exchange announced as incomplete, and how incomplete it was."""

    exchange: str
    trading_date: dt.date
    expected: int
    missing: int


def open_freshness_alerts(conn: Connection) -> list[AlertedGap]:
    """Return the gaps announced and not yet recovered, oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT exchange, trading_date, expected, missing FROM freshness_alerts
            WHERE recovered_at IS NULL ORDER BY trading_date, exchange
            """
        )
        return [AlertedGap(*row) for row in cursor.fetchall()]


def record_freshness_alert(conn: Connection, gap: AlertedGap, as_of: dt.datetime) -> None:
    """Remember that ``gap`` was announced; a gap that recovered and reopened is announced again."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO freshness_alerts (exchange, trading_date, expected, missing, alerted_at)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (exchange, trading_date) DO UPDATE SET
                expected = EXCLUDED.expected, missing = EXCLUDED.missing,
                alerted_at = EXCLUDED.alerted_at, recovered_at = NULL
            """,
            (gap.exchange, gap.trading_date, gap.expected, gap.missing, as_of.replace(tzinfo=None)),
        )


def mark_gap_recovered(conn: Connection, exchange: str, trading_date: dt.date, as_of: dt.datetime) -> None:
    """Record that the announced gap of ``exchange`` on ``trading_date`` is complete as of ``as_of``."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE freshness_alerts SET recovered_at = %s
            WHERE exchange = %s AND trading_date = %s AND recovered_at IS NULL
            """,
            (as_of.replace(tzinfo=None), exchange, trading_date),
        )


def run_failure_details(conn: Connection, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Return the symbols of one run whose latest attempt failed or never finished, and why."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.symbol, latest.first_date, latest.date, latest.status, latest.error_code,
                   latest.error_message, latest.try_number
            FROM (
                SELECT DISTINCT ON (symbol_id, start_date) symbol_id, start_date::date AS first_date,
                       end_date::date AS date, status, error_code, error_message, try_number
                FROM collection_logs WHERE dag_id = %s AND run_id = %s
                ORDER BY symbol_id, start_date, try_number DESC, id DESC
            ) latest JOIN symbols s ON s.id = latest.symbol_id
            WHERE latest.status IN ('failed', 'pending') ORDER BY s.symbol, latest.date
            """,
            (dag_id, run_id),
        )
        return _rows(cursor)


@dataclass(frozen=True)
class NoDataShare:
    """How many of a run's requested targets (completed, failed or no data) IB answered with no data."""

    exchange: str
    no_data: int
    requested: int

    @property
    def share(self) -> float:
        """Return the no-data answers' share of the requested targets, 0 when none was requested."""
        return self.no_data / self.requested if self.requested else 0.0


def run_no_data_shares(conn: Connection, dag_id: str, run_id: str) -> list[NoDataShare]:
    """Return the run's recorded no-data shares (``run_metrics``): the whole run first, then each exchange."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT exchange, no_data, completed + failed + no_data FROM run_metrics
            WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s
            ORDER BY exchange <> %(all)s, exchange
            """,
            {"dag_id": dag_id, "run_id": run_id, "all": ALL_EXCHANGES},
        )
        return [NoDataShare(*row) for row in cursor.fetchall()]


def earlier_no_data_shares(
    conn: Connection, dag_id: str, run_id: str, min_requested: int, runs: int
) -> dict[str, list[float]]:
    """Return per exchange (and ``ALL``) the no-data shares of the ``runs`` runs before ``run_id``.

    Only runs that requested at least ``min_requested`` targets of that exchange count; newest first.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            WITH this_run AS (
                SELECT started_at FROM run_metrics
                WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s AND exchange = %(all)s
            ),
            earlier AS (
                SELECT m.exchange, m.no_data::float / (m.completed + m.failed + m.no_data) AS share,
                       ROW_NUMBER() OVER (PARTITION BY m.exchange ORDER BY m.started_at DESC) AS age
                FROM run_metrics m, this_run
                WHERE m.dag_id = %(dag_id)s AND m.run_id <> %(run_id)s
                  AND m.started_at < this_run.started_at
                  AND m.completed + m.failed + m.no_data >= GREATEST(%(min)s, 1)
            )
            SELECT exchange, share FROM earlier WHERE age <= %(runs)s ORDER BY exchange, age
            """,
            {"dag_id": dag_id, "run_id": run_id, "all": ALL_EXCHANGES, "min": min_requested, "runs": runs},
        )
        shares: dict[str, list[float]] = {}
        for exchange, share in cursor.fetchall():
            shares.setdefault(exchange, []).append(share)
        return shares
