"""What the dashboard's charts read: one symbol's bars bucketed into candles, and what to mark on them.

Candles are aggregated in SQL (``date_bin``), so a year of 1-minute bars leaves the database as at
most a few hundred rows. See docs/operations.md#charts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from psycopg import Connection

from ibkr_market_data.repository.operations import _rows, _without_jit

#: Buckets are counted from this Monday at midnight, exchange time: a week's bucket starts on Monday.
BUCKET_ORIGIN = dt.datetime(2000, 1, 3)


@dataclass(frozen=True)
class Window:
    """The bars of one symbol and timeframe stamped in ``[first, stop)`` (naive UTC, as stored).

    ``zone`` names the time zone whose clock the candles are bucketed and shown in (``UTC`` for
    daily bars, which are stamped with their session's date).
    """

    symbol_id: int
    timeframe: str
    first: dt.datetime
    stop: dt.datetime
    zone: str


#: One row per bucket: its start (exchange time), open of its first bar, highest high, lowest low,
#: close of its last bar, volume and bars summed. Named parameters: those of ``Window`` and ``width``.
_CANDLES = """
    SELECT date_bin(%(width)s, md.timestamp AT TIME ZONE 'UTC' AT TIME ZONE %(zone)s, %(origin)s) AS bucket,
           (array_agg(md.open ORDER BY md.timestamp))[1]::float8 AS open,
           max(md.high)::float8 AS high,
           min(md.low)::float8 AS low,
           (array_agg(md.close ORDER BY md.timestamp DESC))[1]::float8 AS close,
           sum(md.volume)::bigint AS volume,
           count(*)::integer AS bars
    FROM market_data md
    WHERE md.symbol_id = %(symbol_id)s AND md.timeframe = %(timeframe)s
      AND md.timestamp >= %(first)s AND md.timestamp < %(stop)s
    GROUP BY 1 ORDER BY 1
"""


def candles(conn: Connection, window: Window, width: dt.timedelta) -> list[dict[str, Any]]:
    """Return the window's bars aggregated into buckets ``width`` long, oldest first.

    A bucket as wide as the bars holds one bar each: the bars as stored.

    :param conn: an open connection to the market-data database.
    :param window: the symbol, timeframe and span to read.
    :param width: the bucket's length; buckets start at ``BUCKET_ORIGIN`` plus a multiple of it.
    """
    with conn.cursor() as cursor:
        _without_jit(cursor)
        cursor.execute(_CANDLES, {**_window(window), "width": width, "origin": BUCKET_ORIGIN})
        return _rows(cursor)


def _window(window: Window) -> dict[str, object]:
    return {
        "symbol_id": window.symbol_id,
        "timeframe": window.timeframe,
        "first": window.first,
        "stop": window.stop,
        "zone": window.zone,
    }


def bar_counts(
    conn: Connection,
    symbol_id: int,
    daily: tuple[dt.datetime, dt.datetime],
    intraday: tuple[dt.datetime, dt.datetime],
) -> dict[str, int]:
    """Count the symbol's bars per timeframe: daily ones stamped in ``daily``, the others in ``intraday``.

    :param conn: an open connection to the market-data database.
    :param symbol_id: the symbol.
    :param daily: ``[first, stop)`` of the daily bars (session dates at midnight).
    :param intraday: ``[first, stop)`` of the intraday bars (naive UTC).
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT timeframe, count(*) FROM market_data
            WHERE symbol_id = %(symbol_id)s AND (
                (timeframe = '1day' AND timestamp >= %(daily_first)s AND timestamp < %(daily_stop)s)
                OR (timeframe <> '1day' AND timestamp >= %(first)s AND timestamp < %(stop)s))
            GROUP BY timeframe
            """,
            {
                "symbol_id": symbol_id,
                "daily_first": daily[0],
                "daily_stop": daily[1],
                "first": intraday[0],
                "stop": intraday[1],
            },
        )
        return {timeframe: int(count) for timeframe, count in cursor.fetchall()}


#: A marker row's bar is in the chart: a daily one by its session, an intraday one by its UTC start.
_IN_WINDOW = """
    ((timeframe = '1day' AND timestamp >= %(first_day)s AND timestamp < %(stop_day)s)
     OR (timeframe <> '1day' AND timestamp >= %(first)s AND timestamp < %(stop)s))
"""

#: Named parameters: those of ``_IN_WINDOW`` and ``symbol_id``.
_MARKERS = (  # constant fragments only: values are bound
    """
    SELECT 'quality' AS kind, timeframe, timestamp, check_name AS title, detail, severity,
           resolved_at IS NOT NULL AS resolved
    FROM data_quality_issues WHERE symbol_id = %(symbol_id)s AND"""  # noqa: S608
    + _IN_WINDOW
    + """
    UNION ALL
    SELECT 'revision', timeframe, timestamp, 'revised',
           concat_ws(', ',
               CASE WHEN old_open <> new_open
                    THEN format('open %%s -> %%s', old_open::float8, new_open::float8) END,
               CASE WHEN old_high <> new_high
                    THEN format('high %%s -> %%s', old_high::float8, new_high::float8) END,
               CASE WHEN old_low <> new_low
                    THEN format('low %%s -> %%s', old_low::float8, new_low::float8) END,
               CASE WHEN old_close <> new_close
                    THEN format('close %%s -> %%s', old_close::float8, new_close::float8) END,
               CASE WHEN old_volume <> new_volume
                    THEN format('volume %%s -> %%s', old_volume, new_volume) END,
               CASE WHEN old_wap IS DISTINCT FROM new_wap
                    THEN format('wap %%s -> %%s', old_wap::float8, new_wap::float8) END,
               CASE WHEN old_bar_count IS DISTINCT FROM new_bar_count
                    THEN format('trades %%s -> %%s', old_bar_count, new_bar_count) END,
               format('by %%s %%s', dag_id, run_id)),
           NULL, NULL
    FROM bar_revisions WHERE symbol_id = %(symbol_id)s AND"""
    + _IN_WINDOW
    + """
    ORDER BY 3, 1
"""
)


def chart_markers(
    conn: Connection,
    symbol_id: int,
    sessions: tuple[dt.date, dt.date],
    intraday: tuple[dt.datetime, dt.datetime],
) -> list[dict[str, Any]]:
    """Return the data-quality findings and bar revisions a chart marks for the symbol.

    One row per marker, oldest first: ``kind`` (``quality`` or ``revision``), ``timeframe``,
    ``timestamp`` (a daily one is its session at midnight; an intraday one its bar's start in UTC),
    ``title``, ``detail``, ``severity`` (findings) and ``resolved`` (a finding no longer seen).

    :param conn: an open connection to the market-data database.
    :param symbol_id: the symbol.
    :param sessions: the chart's first and last session.
    :param intraday: ``[first, stop)`` of the chart's intraday bars (naive UTC).
    """
    params = {
        "symbol_id": symbol_id,
        "first_day": dt.datetime.combine(sessions[0], dt.time()),
        "stop_day": dt.datetime.combine(sessions[1] + dt.timedelta(days=1), dt.time()),
        "first": intraday[0],
        "stop": intraday[1],
    }
    with conn.cursor() as cursor:
        cursor.execute(_MARKERS, params)
        return _rows(cursor)


def chart_corporate_actions(
    conn: Connection, symbol_id: int, sessions: tuple[dt.date, dt.date]
) -> list[dict[str, Any]]:
    """Return the symbol's ``corporate_actions`` rows effective in the chart's sessions, oldest first.

    :param conn: an open connection to the market-data database.
    :param symbol_id: the symbol.
    :param sessions: the chart's first and last session.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT kind, effective_session, ratio, amount, details, detected_by FROM corporate_actions
            WHERE symbol_id = %s AND effective_session BETWEEN %s AND %s
            ORDER BY effective_session, kind
            """,
            (symbol_id, sessions[0], sessions[1]),
        )
        return _rows(cursor)
