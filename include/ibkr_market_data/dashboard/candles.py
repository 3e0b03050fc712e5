"""Build a symbol's chart: pick the timeframe, bucket its bars into candles, place the markers.

The result is a Plotly figure as plain JSON; nothing here imports plotly. See docs/operations.md#charts.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ibkr_market_data import calendars, timeframes
from ibkr_market_data.repository import charts as chart_queries

if TYPE_CHECKING:
    import psycopg

#: The most candles a chart draws; more bars than that are bucketed on the server.
MAX_CANDLES = 600
#: What the ``timeframe`` query parameter takes besides a timeframe's name.
AUTO = "auto"
DAY_SECONDS = 86_400
#: Bucket lengths a chart may use, in seconds: a minute up to four weeks.
BUCKET_SECONDS = (
    60,
    120,
    300,
    600,
    900,
    1_800,
    3_600,
    7_200,
    10_800,
    14_400,
    21_600,
    DAY_SECONDS,
    7 * DAY_SECONDS,
    28 * DAY_SECONDS,
)
#: Finest first: ``auto`` takes the first of these whose bars fit the chart.
INTRADAY_FINEST_FIRST = ("1min", "5min", "1hour")
MARKER_KINDS = {
    # kind: (legend name, Plotly marker symbol, colour, height above the candle's high as a share of
    # the price range: each kind its own, so markers on one candle do not hide each other)
    "quality": ("data-quality findings", "triangle-down", "#d9480f", 0.04),
    "revision": ("revisions", "diamond", "#7048e8", 0.09),
    "corporate_action": ("corporate actions", "star", "#087f5b", 0.14),
}


@dataclass(frozen=True)
class Marker:
    """Something to mark on the chart, at the first candle its bar (or session) falls in."""

    kind: str
    title: str
    detail: str
    #: Start and end (excluded) of what it is about, exchange time: a session is its whole day.
    start: dt.datetime
    end: dt.datetime
    when: str
    severity: str | None = None
    resolved: bool = False
    #: The candle it is drawn on, by index; None when none of the chart's candles holds it.
    candle: int | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the marker as JSON: what it is, when, and whether the chart shows it."""
        return {
            "kind": self.kind,
            "kind_name": MARKER_KINDS[self.kind][0],
            "title": self.title,
            "detail": self.detail,
            "when": self.when,
            "severity": self.severity,
            "resolved": self.resolved,
            "on_chart": self.candle is not None,
        }


@dataclass(frozen=True)
class Chart:
    """One symbol's candles over a range of sessions, and the markers placed on them."""

    symbol: str
    exchange: str
    currency: str
    zone: str
    requested: str
    timeframe: str
    first: dt.date
    last: dt.date
    bucket_seconds: int
    bars: int
    candles: list[dict[str, Any]]
    markers: list[Marker] = field(default_factory=list)

    @property
    def bucketed(self) -> bool:
        """Whether a candle may hold several bars."""
        return self.bucket_seconds > bar_seconds(self.timeframe)

    def note(self) -> str:
        """Return one line saying what the chart shows."""
        span = self.first.isoformat() if self.first == self.last else f"{self.first}..{self.last}"
        how = (
            f"{self.bars:,} bars bucketed into {len(self.candles):,} candles"
            f" of {duration(self.bucket_seconds)}"
            if self.bucketed
            else f"{len(self.candles):,} bars"
        )
        chosen = " (auto)" if self.requested == AUTO else ""
        return f"{self.symbol} {self.timeframe}{chosen}, {span}: {how}; times in {self.zone}"

    def figure(self) -> dict[str, Any]:
        """Return the Plotly figure: candlesticks, volume below them, one marker trace per kind."""
        xs = [candle["x"] for candle in self.candles]
        traces: list[dict[str, Any]] = [
            {
                "type": "candlestick",
                "name": self.timeframe,
                "x": xs,
                "open": [candle["open"] for candle in self.candles],
                "high": [candle["high"] for candle in self.candles],
                "low": [candle["low"] for candle in self.candles],
                "close": [candle["close"] for candle in self.candles],
                "increasing": {"line": {"color": "#2f9e44"}},
                "decreasing": {"line": {"color": "#e03131"}},
            },
            {
                "type": "bar",
                "name": "volume",
                "x": xs,
                "y": [candle["volume"] for candle in self.candles],
                "yaxis": "y2",
                "marker": {"color": "#adb5bd"},
            },
        ]
        span = max((c["high"] for c in self.candles), default=0) - min(
            (c["low"] for c in self.candles), default=0
        )
        for kind, (name, symbol, colour, above) in MARKER_KINDS.items():
            placed = [marker for marker in self.markers if marker.kind == kind and marker.candle is not None]
            if not placed:
                continue
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": name,
                    "x": [xs[marker.candle] for marker in placed if marker.candle is not None],
                    "y": [
                        self.candles[marker.candle]["high"] + span * above
                        for marker in placed
                        if marker.candle is not None
                    ],
                    "text": [f"{marker.title}: {marker.detail} ({marker.when})" for marker in placed],
                    "hoverinfo": "text",
                    "marker": {"symbol": symbol, "size": 11, "color": colour},
                }
            )
        layout = {
            "height": 560,
            "margin": {"l": 60, "r": 20, "t": 10, "b": 40},
            "showlegend": True,
            "legend": {"orientation": "h", "y": 1.06},
            # A category axis draws the candles side by side: no nights, weekends or holidays between.
            "xaxis": {"type": "category", "rangeslider": {"visible": False}, "nticks": 10},
            "yaxis": {"domain": [0.27, 1], "title": {"text": f"price ({self.currency})"}},
            "yaxis2": {"domain": [0, 0.22], "title": {"text": "volume"}},
        }
        return {"data": traces, "layout": layout}

    def as_json(self) -> dict[str, Any]:
        """Return what the page's script needs: the figure, the note and the chart's parameters."""
        return {
            "symbol": self.symbol,
            "requested": self.requested,
            "timeframe": self.timeframe,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "bucket_seconds": self.bucket_seconds,
            "bars": self.bars,
            "candles": len(self.candles),
            "note": self.note(),
            "figure": self.figure(),
            "markers": [marker.as_json() for marker in self.markers],
        }


def bar_seconds(timeframe: str) -> int:
    """Return the length of one bar of ``timeframe`` in seconds; a day for daily bars."""
    return timeframes.timeframe(timeframe).bar_seconds or DAY_SECONDS


def duration(seconds: int) -> str:
    """Return ``seconds`` as ``5 min``, ``3 h``, ``1 day`` or ``4 weeks``."""
    if seconds % (7 * DAY_SECONDS) == 0:
        weeks = seconds // (7 * DAY_SECONDS)
        return f"{weeks} week{'s' if weeks > 1 else ''}"
    if seconds % DAY_SECONDS == 0:
        days = seconds // DAY_SECONDS
        return f"{days} day{'s' if days > 1 else ''}"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


def session_count(exchange: str, first: dt.date, last: dt.date) -> int:
    """Return the sessions ``exchange`` has from ``first`` to ``last``; without a calendar, the days."""
    try:
        return len(calendars.sessions_between(exchange, first, last))
    except calendars.UnknownExchangeError:
        return (last - first).days + 1


def choose_timeframe(
    requested: str, stored: Mapping[str, int], exchange: str, first: dt.date, last: dt.date, max_candles: int
) -> str:
    """Return the timeframe to chart: ``requested``, or for ``auto`` the finest whose bars fit the chart.

    ``auto`` takes the finest intraday timeframe with bars stored whose sessions' schedule holds at most
    ``max_candles`` bars, else daily bars when stored, else the coarsest timeframe stored (bucketed).

    :param requested: a timeframe's name or ``auto``.
    :param stored: the bars stored per timeframe in the range.
    :param exchange: the symbol's listing exchange, whose calendar gives the sessions.
    :param first: the first session.
    :param last: the last session.
    :param max_candles: the most candles the chart draws.
    """
    if requested != AUTO:
        return requested
    from ibkr_market_data.daily_plan import scheduled_bars

    try:
        sessions = calendars.sessions_between(exchange, first, last)
    except calendars.UnknownExchangeError:
        sessions = []
    for name in INTRADAY_FINEST_FIRST:
        if not stored.get(name) or not sessions:
            continue
        if len(sessions) * scheduled_bars(exchange, sessions[-1], timeframes.timeframe(name)) <= max_candles:
            return name
    if stored.get(timeframes.DAILY.name) or not stored:
        return timeframes.DAILY.name
    return next(name for name in reversed(INTRADAY_FINEST_FIRST) if stored.get(name))


def bucket_seconds(timeframe: str, bars: int, sessions: int, calendar_days: int, max_candles: int) -> int:
    """Return the bucket length that draws ``bars`` bars of ``timeframe`` in at most ``max_candles`` candles.

    The bar length itself when they fit; else the shortest of ``BUCKET_SECONDS`` that is a multiple
    of it and whose bucket count, bounded from above, fits. Buckets shorter than a day are counted as
    the bars' total length over the bucket, plus two part-filled buckets per session; a day or longer,
    as the calendar days over the bucket, plus one.

    :param timeframe: the bars' timeframe.
    :param bars: the bars in the range.
    :param sessions: the sessions in the range.
    :param calendar_days: the calendar days the range spans.
    :param max_candles: the most candles the chart draws.
    """
    size = bar_seconds(timeframe)
    if bars <= max_candles:
        return size
    for width in BUCKET_SECONDS:
        if width <= size or width % size:
            continue
        if width < DAY_SECONDS:
            most = math.ceil(bars * size / width) + 2 * sessions
        else:
            most = math.ceil(calendar_days * DAY_SECONDS / width) + 1
        if most <= max_candles:
            return width
    return BUCKET_SECONDS[-1]


def window(symbol_id: int, timeframe: str, zone: str, first: dt.date, last: dt.date) -> chart_queries.Window:
    """Return the stored span of ``timeframe`` bars for the sessions ``first`` to ``last``.

    Daily bars are stamped with their session's date; intraday bars by their UTC start, a session
    running from midnight to midnight in the exchange's zone.
    """
    from ibkr_market_data.reader import local_midnight_utc

    after = last + dt.timedelta(days=1)
    if timeframe == timeframes.DAILY.name:
        return chart_queries.Window(
            symbol_id,
            timeframe,
            dt.datetime.combine(first, dt.time()),
            dt.datetime.combine(after, dt.time()),
            "UTC",
        )
    return chart_queries.Window(
        symbol_id, timeframe, local_midnight_utc(first, zone), local_midnight_utc(after, zone), zone
    )


def marker_of(row: Mapping[str, Any], zone: str) -> Marker:
    """Return the ``Marker`` of a ``repository.charts.chart_markers`` row, its span in exchange time."""
    stamp: dt.datetime = row["timestamp"]
    timeframe = row["timeframe"]
    if timeframe == timeframes.DAILY.name:
        start = stamp.replace(hour=0, minute=0, second=0, microsecond=0)
        end, when = start + dt.timedelta(days=1), f"session {start.date().isoformat()}"
    else:
        start = stamp.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        end = start + dt.timedelta(seconds=bar_seconds(timeframe))
        when = f"{timeframe} bar {start:%Y-%m-%d %H:%M}"
    return Marker(
        kind=row["kind"],
        title=str(row["title"]),
        detail=str(row["detail"] or ""),
        start=start,
        end=end,
        when=when,
        severity=row.get("severity"),
        resolved=bool(row.get("resolved")),
    )


def corporate_action_marker(row: Mapping[str, Any]) -> Marker:
    """Return the ``Marker`` of a ``corporate_actions`` row: its effective session, described."""
    from ibkr_market_data.corporate_actions import describe_action

    start = dt.datetime.combine(row["effective_session"], dt.time())
    return Marker(
        kind="corporate_action",
        title=str(row["kind"]),
        detail=describe_action(row),
        start=start,
        end=start + dt.timedelta(days=1),
        when=f"session {row['effective_session'].isoformat()}",
    )


def place(markers: Sequence[Marker], starts: Sequence[dt.datetime], width: dt.timedelta) -> list[Marker]:
    """Return ``markers``, each on the first candle whose ``[start, start + width)`` overlaps its span."""
    placed = []
    for marker in markers:
        index = bisect.bisect_right(starts, marker.start) - 1
        if index >= 0 and starts[index] + width > marker.start:
            candle: int | None = index
        elif index + 1 < len(starts) and starts[index + 1] < marker.end:
            candle = index + 1
        else:
            candle = None
        placed.append(replace(marker, candle=candle))
    return placed


def build_chart(
    conn: psycopg.Connection,
    symbol: Mapping[str, Any],
    requested: str,
    first: dt.date,
    last: dt.date,
    max_candles: int = MAX_CANDLES,
) -> Chart:
    """Read the symbol's chart for the sessions ``first`` to ``last``.

    :param conn: an open connection to the market-data database.
    :param symbol: the symbol's row (``repository.symbol_row``).
    :param requested: a timeframe's name or ``auto``.
    :param first: the first session.
    :param last: the last session.
    :param max_candles: the most candles to draw.
    """
    exchange = str(symbol["exchange"])
    try:
        zone = calendars.time_zone(exchange)
    except calendars.UnknownExchangeError:
        zone = "UTC"
    daily = window(symbol["id"], timeframes.DAILY.name, zone, first, last)
    intraday = window(symbol["id"], timeframes.ONE_MINUTE.name, zone, first, last)
    stored = chart_queries.bar_counts(
        conn, symbol["id"], (daily.first, daily.stop), (intraday.first, intraday.stop)
    )
    timeframe = choose_timeframe(requested, stored, exchange, first, last, max_candles)
    bars = stored.get(timeframe, 0)
    width = bucket_seconds(
        timeframe, bars, session_count(exchange, first, last), (last - first).days + 1, max_candles
    )
    chosen = (
        daily if timeframe == timeframes.DAILY.name else window(symbol["id"], timeframe, zone, first, last)
    )
    rows = chart_queries.candles(conn, chosen, dt.timedelta(seconds=width))
    whole_days = width >= DAY_SECONDS
    candles = [
        {**row, "x": row["bucket"].strftime("%Y-%m-%d" if whole_days else "%Y-%m-%d %H:%M")} for row in rows
    ]
    markers = [
        marker_of(row, zone)
        for row in chart_queries.chart_markers(
            conn, symbol["id"], (first, last), (intraday.first, intraday.stop)
        )
    ] + [
        corporate_action_marker(row)
        for row in chart_queries.chart_corporate_actions(conn, symbol["id"], (first, last))
    ]
    markers.sort(key=lambda marker: marker.start)
    return Chart(
        symbol=str(symbol["symbol"]),
        exchange=exchange,
        currency=str(symbol["currency"]),
        zone=zone,
        requested=requested,
        timeframe=timeframe,
        first=first,
        last=last,
        bucket_seconds=width,
        bars=bars,
        candles=candles,
        markers=place(markers, [row["bucket"] for row in rows], dt.timedelta(seconds=width)),
    )
