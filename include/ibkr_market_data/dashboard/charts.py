"""The dashboard's chart routes: a symbol's candlestick page and JSON, a session's page, Plotly's script.

``create_router`` is included by ``app.create_app`` and runs under the app's auth dependency. See
docs/operations.md#charts.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import importlib.util
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from ibkr_market_data import calendars, repository, timeframes
from ibkr_market_data.dashboard import candles, pages
from ibkr_market_data.errors import UnknownExchangeError

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.dashboard.candles import Chart

#: Calendar days charted when no range is given, up to the symbol's latest daily bar.
DEFAULT_DAYS = 180
#: Longest range a chart accepts, in days: twenty years of daily bars are bucketed into weeks.
MAX_CHART_DAYS = 20 * 366
TIMEFRAME_CHOICES = (candles.AUTO, *timeframes.TIMEFRAMES)

#: ``read(work)``: ``work(conn)`` run on a market-data connection under the app's gate (``app.create_app``).
Read = Callable[[Callable[["psycopg.Connection"], Any]], Awaitable[Any]]
FromParam = Annotated[str | None, Query(alias="from", description="First session, YYYY-MM-DD")]
ToParam = Annotated[str | None, Query(alias="to", description="Last session, YYYY-MM-DD")]
SessionParam = Annotated[
    str | None, Query(description="One session, YYYY-MM-DD: the chart of that day (instead of from/to)")
]
TimeframeParam = Annotated[
    str, Query(description=f"{', '.join(TIMEFRAME_CHOICES)}; auto: the finest whose bars fit the chart")
]

#: The page's script: draws the figure, and on a zoom asks the server for the zoomed sessions'
#: candles (finer bars when ``auto``); a double click goes back to the first range.
CHART_SCRIPT = """
(function () {
  const element = document.getElementById('chart');
  const note = document.getElementById('chart-note');
  const config = {responsive: true, displaylogo: false};
  let shown = JSON.parse(document.getElementById('chart-data').textContent);
  const first = {from: shown.from, to: shown.to};
  function draw(chart) {
    shown = chart;
    Object.assign(element.dataset, {candles: chart.candles, bars: chart.bars, timeframe: chart.timeframe,
      bucketSeconds: chart.bucket_seconds, from: chart.from, to: chart.to});
    note.textContent = chart.note;
    const form = document.getElementById('chart-form');
    form.elements.from.value = chart.from;
    form.elements.to.value = chart.to;
    form.elements.timeframe.value = chart.requested;
    showMarkers(chart.markers);
    return Plotly.react(element, chart.figure.data, chart.figure.layout, config);
  }
  function showMarkers(markers) {
    const table = document.createElement('table');
    table.id = 'markers';
    const heads = ['kind', 'when', 'what', 'detail', 'severity', 'on the chart'];
    const rows = [heads].concat(markers.map(m => [m.kind_name, m.when, m.title, m.detail,
      m.severity ? m.severity + (m.resolved ? ', resolved' : '') : '',
      m.on_chart ? 'yes' : 'no: outside the candles']));
    rows.forEach((cells, index) => {
      const row = table.insertRow();
      cells.forEach(text => {
        const cell = document.createElement(index ? 'td' : 'th');
        cell.textContent = text;
        row.appendChild(cell);
      });
    });
    document.getElementById('markers-count').textContent = markers.length;
    document.getElementById('markers').replaceWith(table);
  }
  function load(from, to) {
    const query = new URLSearchParams({timeframe: shown.requested, from: from, to: to});
    element.dataset.loading = 'true';
    return fetch(element.dataset.api + '?' + query, {credentials: 'same-origin'})
      .then(response => response.json().then(body => response.ok ? body : Promise.reject(body.detail)))
      .then(chart => { history.replaceState(null, '', '?' + query); return draw(chart); })
      .catch(error => { note.textContent = 'Could not load the chart: ' + error; })
      .finally(() => { delete element.dataset.loading; });
  }
  draw(shown).then(() => element.on('plotly_relayout', event => {
    if (event['xaxis.autorange']) {
      if (shown.from !== first.from || shown.to !== first.to) load(first.from, first.to);
      return;
    }
    // A drag reports the two ends apart, Plotly.relayout({'xaxis.range': [a, b]}) as one.
    const [left, right] = event['xaxis.range'] || [event['xaxis.range[0]'], event['xaxis.range[1]']];
    const xs = element.data[0].x;
    if (left === undefined || right === undefined || !xs.length) return;
    const day = index => String(xs[Math.min(xs.length - 1, Math.max(0, index))]).slice(0, 10);
    const from = day(Math.ceil(left)), to = day(Math.floor(right));
    if (from <= to && (from !== shown.from || to !== shown.to)) load(from, to);
  }));
})();
"""


@functools.cache
def plotly_script() -> Path | None:
    """Return the path of ``plotly.min.js`` inside the installed plotly package; None without it."""
    spec = importlib.util.find_spec("plotly")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


@functools.cache
def plotly_version() -> str:
    """Return the installed plotly's version: the script's URL carries it, so a new one is fetched anew."""
    try:
        return importlib.metadata.version("plotly")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def parse_day(value: str | None, name: str) -> dt.date | None:
    """Return query parameter ``name`` as a date, as every dashboard page parses one (``app.parse_day``).

    :raises HTTPException: 400 naming the parameter, for a malformed date.
    """
    from ibkr_market_data.dashboard.app import parse_day as parse_query_day  # app includes this module

    return parse_query_day(value, name)


def check_timeframe(value: str) -> str:
    """Return the ``timeframe`` query parameter, lower-cased.

    :raises HTTPException: 400 listing the choices, for one that is none of them.
    """
    name = value.strip().lower()
    if name not in TIMEFRAME_CHOICES:
        raise HTTPException(
            status_code=400,
            detail=f"Query parameter 'timeframe' is {value!r}; choose from {', '.join(TIMEFRAME_CHOICES)}",
        )
    return name


def find_symbol(conn: psycopg.Connection, symbol: str) -> dict[str, Any]:
    """Return the ``symbols`` row of ``symbol`` with its latest daily bar.

    :raises HTTPException: 404 for a symbol the table does not have.
    """
    found = repository.symbol_row(conn, symbol.strip().upper())
    if found is None:
        raise HTTPException(status_code=404, detail=f"No symbol {symbol!r} in the symbols table")
    return found


def chart_range(
    symbol: Mapping[str, Any], start: str | None, end: str | None, session: str | None, today: dt.date
) -> tuple[dt.date, dt.date]:
    """Return the sessions to chart: ``session`` alone, or ``from``..``to``, by default the last 180 days.

    The default ends at the symbol's latest daily bar (today without one).

    :raises HTTPException: 400 for a malformed date, a reversed or too long range, or ``session``
        given with ``from`` or ``to``.
    """
    day = parse_day(session, "session")
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if day is not None:
        if first is not None or last is not None:
            raise HTTPException(status_code=400, detail="Give either 'session' or 'from'/'to', not both")
        return day, day
    last = last or symbol["latest_bar"] or today
    first = first or last - dt.timedelta(days=DEFAULT_DAYS)
    if first > last:
        raise HTTPException(
            status_code=400, detail=f"'from' ({first}) is after 'to' ({last}); give from <= to"
        )
    if (last - first).days > MAX_CHART_DAYS:
        raise HTTPException(
            status_code=400,
            detail=f"{first}..{last} spans {(last - first).days} days; at most {MAX_CHART_DAYS} in one chart",
        )
    return first, last


def create_router(read: Read, today: Callable[[], dt.date]) -> APIRouter:
    """Return the chart routes.

    :param read: runs its argument on a market-data connection, under the app's cap and timeouts.
    :param today: gives the date.
    """
    router = APIRouter()

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def read_chart(
        symbol: str, start: str | None, end: str | None, session: str | None, timeframe: str
    ) -> tuple[dict[str, Any], Chart, list[dict[str, Any]]]:
        requested = check_timeframe(timeframe)

        def work(conn: psycopg.Connection) -> tuple[dict[str, Any], Chart, list[dict[str, Any]]]:
            found = find_symbol(conn, symbol)
            first, last = chart_range(found, start, end, session, today())
            chart = candles.build_chart(conn, found, requested, first, last)
            return found, chart, repository.symbol_attempts(conn, found["id"])

        return await read(work)

    @router.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        path = plotly_script()
        if path is None:
            raise HTTPException(
                status_code=503,
                detail="Plotly's script is missing: install plotly (it is in requirements.txt)",
            )
        # The URL carries plotly's version, so the script may be kept for a long time.
        return FileResponse(
            path, media_type="text/javascript", headers={"Cache-Control": "private, max-age=604800"}
        )

    @router.get("/symbols/{symbol}", response_class=HTMLResponse)
    async def symbol_page(
        request: Request,
        symbol: str,
        start: FromParam = None,
        end: ToParam = None,
        session: SessionParam = None,
        timeframe: TimeframeParam = candles.AUTO,
    ) -> HTMLResponse:
        found, chart, attempts = await read_chart(symbol, start, end, session, timeframe)
        return HTMLResponse(symbol_chart_page(root(request), found, chart, attempts))

    @router.get("/api/symbols/{symbol}/candles")
    async def candles_json(
        symbol: str,
        start: FromParam = None,
        end: ToParam = None,
        session: SessionParam = None,
        timeframe: TimeframeParam = candles.AUTO,
    ) -> JSONResponse:
        """Return the symbol's candles and markers as the page draws them (its zoom reads this)."""
        _, chart, _ = await read_chart(symbol, start, end, session, timeframe)
        return JSONResponse(chart.as_json())

    @router.get("/sessions/{exchange}/{day}", response_class=HTMLResponse)
    async def session_page(request: Request, exchange: str, day: str) -> HTMLResponse:
        session = parse_day(day, "day")
        assert session is not None
        listing = exchange.strip().upper()
        try:
            calendars.calendar_code(listing)
        except UnknownExchangeError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        rows = await read(lambda conn: session_rows(conn, listing, session))
        return HTMLResponse(session_html(root(request), listing, session, rows))

    return router


def session_rows(conn: psycopg.Connection, exchange: str, session: dt.date) -> list[dict[str, Any]]:
    """Return each active symbol listed on ``exchange`` with its coverage of ``session`` per timeframe."""
    from ibkr_market_data.reader import read_coverage

    names = sorted(
        row.symbol
        for row in repository.select_symbols(conn, exchanges=[exchange])
        if row.primary_exchange == exchange
    )
    by_symbol: dict[str, dict[str, Any]] = {name: {"symbol": name} for name in names}
    if not names:
        return []
    for timeframe in timeframes.TIMEFRAMES:
        frame = read_coverage(names, timeframe, session, session, conn=conn)
        for (symbol, _), status, bars, expected in zip(
            frame.index, frame["status"], frame["bars"], frame["expected_bars"], strict=True
        ):
            if symbol in by_symbol:
                by_symbol[symbol][timeframe] = (str(status), int(bars), int(expected))
    return list(by_symbol.values())


STATUS_CLASSES = {"complete": "complete", "no_data": "complete", "partial": "partial", "failed": "failed"}


def session_html(root: str, exchange: str, session: dt.date, rows: Sequence[Mapping[str, Any]]) -> str:
    """Render a session's page: each symbol of the exchange, its status per timeframe, a link to its chart."""
    lines = []
    for row in rows:
        link = f"{escape(root)}/symbols/{quote(row['symbol'])}?{urlencode({'session': session.isoformat()})}"
        cells = [f"<td><a href='{escape(link)}'>{escape(row['symbol'])}</a></td>"]
        for timeframe in timeframes.TIMEFRAMES:
            if timeframe not in row:
                cells.append("<td class='closed'>·</td>")
                continue
            status, bars, expected = row[timeframe]
            css = STATUS_CLASSES.get(status, "empty")
            cells.append(
                f"<td class='{css}' data-timeframe='{timeframe}' data-status='{escape(status)}' "
                f"title='{bars} of {expected} bars'>"
                f"{escape(status.replace('_', ' '))} ({bars}/{expected})</td>"
            )
        lines.append(cells)
    trading = calendars.is_session(exchange, session)
    overview = f"{escape(root)}/?{urlencode({'from': session.isoformat(), 'to': session.isoformat()})}"
    body = (
        f"<p>{'' if trading else '<strong>Not a session of ' + escape(exchange) + '.</strong> '}"
        f"Active symbols listed on {escape(exchange)}, what is stored of each timeframe (bars / bars "
        f"the schedule holds). <a href='{overview}'>Overview of the day</a></p>"
        + pages._table(
            "session", ["symbol", *timeframes.TIMEFRAMES], lines, f"No active symbol on {exchange}."
        )
    )
    return pages._page(root, f"{exchange} {session.isoformat()}", body)


def json_script(value: Any) -> str:
    """Return ``value`` as JSON safe inside a ``<script>`` element."""
    return json.dumps(value).replace("</", "<\\/")


def symbol_chart_page(
    root: str, symbol: Mapping[str, Any], chart: Chart, attempts: Sequence[Mapping[str, Any]]
) -> str:
    """Render a symbol's page: its listing, the candlestick chart, what is marked on it, its attempts."""
    name = str(symbol["symbol"])
    info = (
        f"<p>{escape(str(symbol['exchange']))} · {escape(str(symbol['currency']))} "
        f"· conId {escape(str(symbol['con_id']))}"
        f" · {'active' if symbol['active'] else 'inactive: ' + escape(str(symbol['inactive_reason'] or ''))}"
        f"{' · data from ' + str(symbol['first_available_date']) if symbol['first_available_date'] else ''}"
        "</p>"
    )
    options = "".join(
        f"<option value='{choice}'{' selected' if choice == chart.requested else ''}>{choice}</option>"
        for choice in TIMEFRAME_CHOICES
    )
    form = (
        f"<form method='get' id='chart-form'>Timeframe <select name='timeframe'>{options}</select> "  # noqa: S608 (HTML)
        f"from <input type='date' name='from' value='{chart.first}'> "
        f"to <input type='date' name='to' value='{chart.last}'> <button type='submit'>Show</button> "
        f"<a href='{escape(root)}/symbols/{quote(name)}'>last {DEFAULT_DAYS} days</a>"
        " · zoom in for finer bars, double-click to go back</form>"
    )
    api = f"{escape(root)}/api/symbols/{quote(name)}/candles"
    marker_rows = [
        [
            pages._cell(candles.MARKER_KINDS[marker.kind][0]),  # the columns of showMarkers in CHART_SCRIPT
            pages._cell(marker.when),
            pages._cell(marker.title),
            pages._cell(marker.detail),
            pages._cell(
                f"{marker.severity}{', resolved' if marker.resolved else ''}" if marker.severity else None
            ),
            pages._cell("yes" if marker.candle is not None else "no: outside the candles"),
        ]
        for marker in chart.markers
    ]
    attempt_rows = [
        [
            pages._cell(
                row["date"] if row["first_date"] == row["date"] else f"{row['first_date']}..{row['date']}"
            ),
            pages._cell(row["status"]),
            pages._cell(row["error_code"], numeric=True),
            pages._cell(row["error_message"]),
            pages._cell(row["try_number"], numeric=True),
            pages._cell(row["records_collected"], numeric=True),
            pages._cell(row["request_seconds"], numeric=True),
            pages._cell(row["dag_id"]),
            pages._cell(row["run_id"]),
            pages._cell(row["completed_at"]),
        ]
        for row in attempts
    ]
    body = (
        info
        + form
        + f"<p class='muted' id='chart-note'>{escape(chart.note())}</p>"
        + f"<div id='chart' data-api='{api}' data-candles='{len(chart.candles)}' data-bars='{chart.bars}' "
        f"data-timeframe='{chart.timeframe}' data-bucket-seconds='{chart.bucket_seconds}' "
        f"style='width:100%;min-height:560px'></div>"
        + f"<h2>Marked on the chart (<span id='markers-count'>{len(chart.markers)}</span>)</h2>"
        + pages._table(
            "markers",
            ["kind", "when", "what", "detail", "severity", "on the chart"],
            marker_rows,
            "No data-quality finding, revision or corporate action in this range.",
        )
        + f"<p><a href='{escape(root)}/api/symbols/{quote(name)}'>JSON: bars and attempts</a></p>"
        + "<h2>Attempts</h2>"
        + pages._table(
            "attempts",
            ["date", "status", "IB code", "message", "try", "bars", "request s", "DAG", "run", "finished"],
            attempt_rows,
            "No attempt recorded.",
        )
        # Last: the script fills in the elements above.
        + f"<script src='{escape(root)}/static/plotly.min.js?v={quote(plotly_version())}'></script>"
        + f"<script type='application/json' id='chart-data'>{json_script(chart.as_json())}</script>"
        + f"<script>{CHART_SCRIPT}</script>"
    )
    return pages._page(root, name, body)
