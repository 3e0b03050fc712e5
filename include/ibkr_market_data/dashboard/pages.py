"""Render the dashboard's pages: plain tables and a coverage heatmap, no JavaScript (charts: charts.py).

Every value is escaped; cells carry ``data-*`` attributes with their numbers, so a browser test can
read them back without parsing text. See docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from ibkr_market_data.coverage import CoverageRow, Freshness

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2rem; color: #1d232a; background: #fff; }
h1 { font-size: 1.4rem; margin: 0 0 .4rem; } h2 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; }
table { border-collapse: collapse; font-size: .82rem; }
td, th { padding: .2rem .45rem; border: 1px solid #d8dde3; }
th { background: #f3f5f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.heatmap td { min-width: 2.6rem; text-align: center; font-size: .72rem; }
.heatmap th.date {
  writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; font-size: .7rem;
}
.complete { background: #a7e3b4; } .partial { background: #f9d98b; } .failed { background: #f2a2a2; }
.empty { background: #f3f5f7; color: #98a2ad; } .closed { background: #fff; color: #c4cad1; }
.fresh { color: #1b7f3b; font-weight: 600; } .late { color: #b42318; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; } nav a { margin-right: 1rem; } .muted { color: #6b7580; }
form { margin: .4rem 0 .8rem; } input { font: inherit; }
"""


def jsonable(rows: Iterable[Mapping[str, Any] | None]) -> list[Any]:
    """Return ``rows`` with dates as ISO text and decimals as floats, for a JSON response."""

    def value(item: Any) -> Any:
        if isinstance(item, dt.datetime | dt.date):
            return item.isoformat()
        if isinstance(item, decimal.Decimal):
            return float(item)
        return item

    return [None if row is None else {key: value(item) for key, item in row.items()} for row in rows]


def _page(root: str, title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<nav><a href='{escape(root)}/'>Market data</a>"
        f"<a href='{escape(root)}/corporate-actions'>Corporate actions</a>"
        f"<a href='{escape(root)}/api/coverage'>JSON: coverage</a>"
        f"<a href='{escape(root)}/docs'>API</a></nav>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )


def _cell(value: Any, numeric: bool = False) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, decimal.Decimal):
        text = format(value.normalize(), "f")  # prices are NUMERIC(20,8): 30.55, not 30.55000000
    elif isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = str(value)
    return f"<td class='num'>{escape(text)}</td>" if numeric else f"<td>{escape(text)}</td>"


def _table(table_id: str, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    if not body:
        return f"<p class='muted' id='{table_id}'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    return f"<div class='scroll'><table id='{table_id}'><tr>{head}</tr>{body}</table></div>"


def _symbol_link(root: str, symbol: str, session: dt.date | None = None) -> str:
    query = f"?{urlencode({'session': session.isoformat()})}" if session else ""
    return f"<td><a href='{escape(root)}/symbols/{quote(symbol)}{query}'>{escape(symbol)}</a></td>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def heatmap(rows: Sequence[CoverageRow], root: str = "") -> str:
    """Render the coverage heatmap: exchanges down, trading dates across, each cell stored/expected.

    A cell is coloured by completeness and links to its session's page (each symbol's status there).
    """
    if not rows:
        return "<p class='muted' id='coverage'>No active symbols, or no trading date in the range.</p>"
    dates = sorted({row.date for row in rows})
    exchanges = sorted({row.exchange for row in rows})
    by_key = {(row.exchange, row.date): row for row in rows}
    head = "<th>exchange</th>" + "".join(f"<th class='date'>{day.isoformat()}</th>" for day in dates)
    lines = []
    for exchange in exchanges:
        cells = [f"<th>{escape(exchange)}</th>"]
        for day in dates:
            row = by_key.get((exchange, day))
            if row is None:
                cells.append(f"<td class='closed' title='{escape(exchange)} does not trade {day}'>·</td>")
                continue
            if row.expected == 0:
                css = "empty"
            elif row.complete:
                css = "complete"
            elif row.failed:
                css = "failed"
            else:
                css = "partial"
            title = (
                f"{exchange} {day}: {row.stored} stored of {row.expected} expected, "
                f"{row.failed} failed, {row.no_data} no data"
            )
            cells.append(
                f"<td class='{css}' title='{escape(title)}' data-exchange='{escape(exchange)}' "
                f"data-date='{day.isoformat()}' data-expected='{row.expected}' data-stored='{row.stored}' "
                f"data-failed='{row.failed}' data-no-data='{row.no_data}'>"
                f"<a href='{escape(root)}/sessions/{quote(exchange)}/{day.isoformat()}'>"
                f"{row.stored}/{row.expected}</a></td>"
            )
        lines.append(f"<tr>{''.join(cells)}</tr>")
    legend = (
        "<p class='muted'><span class='complete'>&nbsp;complete&nbsp;</span> "
        "<span class='partial'>&nbsp;incomplete&nbsp;</span> "
        "<span class='failed'>&nbsp;has failures&nbsp;</span> "
        "· not a session of that exchange. A cell: bars stored / symbols expected by the calendar "
        "(no-data sessions count as complete).</p>"
    )
    return (
        f"<div class='scroll'><table class='heatmap' id='coverage'><tr>{head}</tr>{''.join(lines)}"
        f"</table></div>{legend}"
    )


def overview_page(
    root: str,
    start: dt.date,
    end: dt.date,
    rows: Sequence[CoverageRow],
    fresh: Sequence[Freshness],
    delay: dt.timedelta,
    runs: Sequence[Mapping[str, Any]],
    failed: Sequence[Mapping[str, Any]],
    metrics: Sequence[Mapping[str, Any]],
    symbols_loaded: bool = True,
) -> str:
    """Render the overview: coverage, freshness, latest runs, failures and run metrics of a range.

    :param symbols_loaded: False until IB resolved a symbol: the page says so first.
    """
    query = urlencode({"from": start.isoformat(), "to": end.isoformat()})
    form = (
        f"<form method='get' action='{escape(root)}/'>From <input type='date' name='from' value='{start}'> "
        f"to <input type='date' name='to' value='{end}'> <button type='submit'>Show</button> "
        f"<a href='{escape(root)}/api/coverage?{escape(query)}'>JSON</a></form>"
    )
    freshness_rows = [
        [
            f"<td>{escape(item.exchange)}</td>",
            _cell(item.latest_complete),
            _cell(item.due),
            _cell(item.due_missing, numeric=True),
            f"<td class='{'late' if item.status == 'late' else 'fresh'}'>{escape(item.status)}</td>",
        ]
        for item in fresh
    ]
    run_rows = [
        [
            _cell(run["dag_id"]),
            _cell(run["run_id"]),
            _cell(run["started_at"]),
            f"<td class='num'>{escape(_duration(run['duration_seconds']))}</td>",
            f"<td class='{'late' if run['outcome'] == 'failed' else 'fresh'}'>{escape(run['outcome'])}</td>",
            *(
                _cell(run[key], numeric=True)
                for key in ("completed", "failed", "no_data", "skipped", "pending")
            ),
        ]
        for run in runs
    ]
    failure_rows = [
        [
            _symbol_link(root, row["symbol"], row["date"]),
            _cell(row["exchange"]),
            _cell(row["date"]),
            _cell(row["error_code"], numeric=True),
            _cell(row["error_message"]),
            _cell(row["try_number"], numeric=True),
            _cell(row["dag_id"]),
            _cell(row["run_id"]),
        ]
        for row in failed
    ]
    metric_rows = [
        [
            _cell(row["dag_id"]),
            _cell(row["run_id"]),
            _cell(row["exchange"]),
            *(_cell(row[key], numeric=True) for key in ("symbols", "requests", "bars", "retries", "failed")),
            _cell(row["latency_p50"], numeric=True),
            _cell(row["latency_p95"], numeric=True),
            _cell(
                (row["bars"] / row["wall_seconds"]) if row["wall_seconds"] else None,
                numeric=True,
            ),
            f"<td class='num'>{escape(_duration(row['wall_seconds']))}</td>",
        ]
        for row in metrics
    ]
    not_loaded = (
        ""
        if symbols_loaded
        else "<p class='late' id='no-symbols'>No symbols loaded yet: the first daily run that reaches IB "
        "loads the universe files. Until then nothing is collected; see the daily run's plan task.</p>"
    )
    body = (
        f"{not_loaded}<p class='muted'>Trading dates {start} to {end}. "
        f"Data is due {delay.total_seconds() / 3600:g} h after each session's close.</p>"
        f"{form}<h2>Coverage</h2>{heatmap(rows, root)}"
        "<h2>Freshness</h2>"
        + _table(
            "freshness",
            ["exchange", "latest complete session", "latest due session", "missing from it", "status"],
            freshness_rows,
            "No active symbols.",
        )
        + "<h2>Latest runs</h2>"
        + _table(
            "runs",
            [
                "DAG",
                "run",
                "started",
                "duration",
                "outcome",
                "completed",
                "failed",
                "no data",
                "skipped",
                "pending",
            ],
            run_rows,
            "No runs yet.",
        )
        + f"<h2>Failures ({len(failed)})</h2>"
        + _table(
            "failures",
            ["symbol", "exchange", "date", "IB code", "message", "try", "DAG", "run"],
            failure_rows,
            "No failed attempt in the range.",
        )
        + "<h2>Run metrics</h2>"
        + _table(
            "metrics",
            [
                "DAG",
                "run",
                "exchange",
                "symbols",
                "requests",
                "bars",
                "retries",
                "failed",
                "latency p50 (s)",
                "latency p95 (s)",
                "bars/s",
                "wall",
            ],  # fmt: skip
            metric_rows,
            "No run metrics recorded yet (a run's summary task records them).",
        )
        + "<h2>Data quality</h2><p class='muted'>No data-quality checks are recorded yet.</p>"
        + f"<form method='get' action='{escape(root)}/symbols/'>Symbol <input name='symbol' size='8'></form>"
    )
    return _page(root, "Market data", body)


def corporate_actions_page(
    root: str,
    start: dt.date,
    end: dt.date,
    actions: Sequence[Mapping[str, Any]],
    identities: Sequence[Mapping[str, Any]],
    inactive: Sequence[Mapping[str, Any]],
) -> str:
    """Render the corporate actions of a range, every symbol's conIds over time and the inactive symbols."""
    from ibkr_market_data.corporate_actions import describe_action

    query = urlencode({"from": start.isoformat(), "to": end.isoformat()})
    form = (
        f"<form method='get' action='{escape(root)}/corporate-actions'>From "
        f"<input type='date' name='from' value='{start}'> to <input type='date' name='to' value='{end}'> "
        f"<button type='submit'>Show</button> "
        f"<a href='{escape(root)}/api/corporate-actions?{escape(query)}'>JSON</a></form>"
    )
    action_rows = [
        [
            _cell(row["effective_session"]),
            _symbol_link(root, row["symbol"], row["effective_session"]),
            _cell(row["exchange"]),
            f"<td data-kind='{escape(row['kind'])}'>{escape(row['kind'])}</td>",
            _cell(row["ratio"], numeric=True),
            _cell(describe_action(row)),
            _cell(row["detected_at"]),
        ]
        for row in actions
    ]
    identity_rows = [
        [
            _symbol_link(root, row["symbol"]),
            _cell(row["exchange"]),
            _cell(row["con_id"], numeric=True),
            _cell(row["valid_from"]),
            _cell(row["valid_to"]),
        ]
        for row in identities
    ]
    inactive_rows = [
        [
            _symbol_link(root, row["symbol"]),
            _cell(row["exchange"]),
            _cell(row["reason"]),
            _cell(row["last_session"]),
            _cell(row["inactive_since"]),
            _cell(row["daily_bars"], numeric=True),
        ]
        for row in inactive
    ]
    body = (
        f"<p class='muted'>Effective {start} to {end}. Raw bars stay raw; what IB did to each symbol is "
        "recorded here (splits re-fetch the symbol's history on the new basis).</p>"
        f"{form}<h2>Corporate actions ({len(actions)})</h2>"
        + _table(
            "corporate-actions",
            ["effective", "symbol", "exchange", "kind", "ratio", "what", "recorded"],
            action_rows,
            "No corporate action effective in the range.",
        )
        + "<h2>Identity changes</h2>"
        + _table(
            "identities",
            ["symbol", "exchange", "conId", "from", "to"],
            identity_rows,
            "No symbol has had more than one conId.",
        )
        + f"<h2>Inactive symbols ({len(inactive)})</h2>"
        + _table(
            "inactive",
            ["symbol", "exchange", "reason", "last session", "inactive since", "daily bars kept"],
            inactive_rows,
            "Every symbol is active.",
        )
    )
    return _page(root, "Corporate actions and identities", body)


def error_page(root: str, status: int, detail: str) -> str:
    """Render the page of an HTTP error: its status and the message."""
    return _page(root, f"Error {status}", f"<p id='error'>{escape(detail)}</p>")
