"""The symbol page's chart on a real PostgreSQL: candles against the stored bars, buckets, markers, errors."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from ibkr_market_data.dashboard import candles
from ibkr_market_data.dashboard.app import create_app
from tests.integration.operations import chart_scenario
from tests.integration.operations.chart_scenario import BEFORE, SESSION

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def scenario(db_conn) -> dict:
    return chart_scenario.store(db_conn)


@pytest.fixture
def client(market_db: str) -> Iterator[TestClient]:
    app = create_app(connect=lambda: psycopg.connect(market_db), require_auth=False)
    with TestClient(app, root_path="/market-data") as test_client:
        yield test_client


def stored(conn, symbol_id: int, timeframe: str) -> list[tuple]:
    """Return (local start, open, high, low, close, volume) of the stored bars, oldest first."""
    rows = conn.execute(
        """
        SELECT timestamp, open::float8, high::float8, low::float8, close::float8, volume FROM market_data
        WHERE symbol_id = %s AND timeframe = %s ORDER BY timestamp
        """,
        (symbol_id, timeframe),
    ).fetchall()
    return [
        (stamp.replace(tzinfo=dt.UTC).astimezone(NEW_YORK).replace(tzinfo=None), *values)
        for stamp, *values in rows
    ]


def chart_data(page: str) -> dict:
    return json.loads(
        re.search(r"<script type='application/json' id='chart-data'>(.*?)</script>", page).group(1)
    )


def test_the_5min_chart_of_a_session_has_one_candle_per_stored_bar(scenario, client, db_conn):
    bars = [bar for bar in stored(db_conn, scenario["ids"]["AAPL"], "5min") if bar[0].date() == SESSION]
    response = client.get("/symbols/AAPL", params={"session": SESSION.isoformat(), "timeframe": "5min"})
    assert response.status_code == 200, response.text
    chart = chart_data(response.text)
    [price, volume, *_] = chart["figure"]["data"]
    assert len(bars) == 78 and chart["candles"] == len(price["x"]) == 78 and chart["bucket_seconds"] == 300
    assert price["x"] == [bar[0].strftime("%Y-%m-%d %H:%M") for bar in bars]
    assert list(zip(price["open"], price["high"], price["low"], price["close"], strict=True)) == [
        bar[1:5] for bar in bars
    ]
    assert volume["y"] == [bar[5] for bar in bars]
    assert "data-candles='78'" in response.text


def test_more_bars_than_the_chart_draws_are_bucketed_in_sql_as_ohlcv(scenario, db_conn):
    symbol = {"id": scenario["ids"]["AAPL"], "symbol": "AAPL", "exchange": "NASDAQ", "currency": "USD"}
    chart = candles.build_chart(db_conn, symbol, "1min", BEFORE, SESSION, max_candles=100)

    bars = stored(db_conn, scenario["ids"]["AAPL"], "1min")
    assert chart.bars == len(bars) == 2 * 390 and chart.bucket_seconds == 600
    expected: dict[dt.datetime, list] = {}
    for start, open_, high, low, close, volume in bars:  # 10-minute buckets from midnight, New York time
        bucket = start.replace(minute=start.minute - start.minute % 10)
        if bucket not in expected:
            expected[bucket] = [open_, high, low, close, volume]
        else:
            held = expected[bucket]
            held[1:] = [max(held[1], high), min(held[2], low), close, held[4] + volume]
    assert len(chart.candles) == len(expected) == 78 <= 100
    assert [
        (c["bucket"], [c["open"], c["high"], c["low"], c["close"], c["volume"]]) for c in chart.candles
    ] == list(expected.items())
    assert "780 bars bucketed into 78 candles of 10 min" in chart.note()


def test_auto_takes_daily_bars_for_the_default_range_and_1min_for_one_session(scenario, client):
    default = chart_data(client.get("/symbols/AAPL").text)
    assert (default["timeframe"], default["to"]) == ("1day", SESSION.isoformat())
    assert default["candles"] == scenario["written"][("AAPL", "1day")]  # every bar of the last 180 days
    one_session = client.get(
        "/api/symbols/AAPL/candles", params={"from": SESSION.isoformat(), "to": SESSION.isoformat()}
    ).json()
    assert (one_session["timeframe"], one_session["candles"], one_session["bucket_seconds"]) == (
        "1min",
        390,
        60,
    )
    week = client.get(
        "/api/symbols/AAPL/candles", params={"from": "2025-03-10", "to": SESSION.isoformat()}
    ).json()
    assert week["timeframe"] == "5min"  # 5 sessions of 1-minute bars would be 1,950 candles
    msft = client.get("/api/symbols/MSFT/candles", params={"session": SESSION.isoformat()}).json()
    assert (msft["timeframe"], msft["candles"]) == ("1day", 1)  # no intraday bars stored


def test_findings_revisions_and_corporate_actions_are_marked_on_their_candles(scenario, client):
    response = client.get("/symbols/AAPL", params={"session": SESSION.isoformat(), "timeframe": "5min"})
    traces = {trace["name"]: trace for trace in chart_data(response.text)["figure"]["data"]}
    # A finding and a corporate action are about a session: its first candle.
    assert traces["data-quality findings"]["x"] == ["2025-03-14 09:30"]
    assert traces["corporate actions"]["x"] == ["2025-03-14 09:30"]
    assert traces["revisions"]["x"] == ["2025-03-14 10:00"]  # the revised bar's own candle
    assert traces["revisions"]["text"][0].startswith(
        "revised: volume 22594 -> 23594, by backfill_market_data"
    )
    markers = client.get(
        "/api/symbols/AAPL/candles", params={"session": SESSION.isoformat(), "timeframe": "1day"}
    ).json()["markers"]
    assert sorted((m["kind"], m["title"], m["on_chart"]) for m in markers) == [
        ("corporate_action", "split", True),
        ("quality", "volume_spike", True),
        ("revision", "revised", True),
    ]
    table = response.text[response.text.index("id='markers'") :]
    assert "volume 9.1x the median of 20 sessions" in table and "split 4:1 (found by test scenario)" in table
    before = client.get("/api/symbols/AAPL/candles", params={"session": BEFORE.isoformat()}).json()
    assert before["markers"] == []


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/symbols/NOPE", {}, 404, "No symbol 'NOPE' in the symbols table"),
        (
            "/symbols/AAPL",
            {"from": "2025-02-30"},
            400,
            "Query parameter 'from' must be a valid calendar date",
        ),
        ("/symbols/AAPL", {"session": "yesterday"}, 400, "Query parameter 'session'"),
        (
            "/symbols/AAPL",
            {"timeframe": "2min"},
            400,
            "Query parameter 'timeframe' is '2min'; choose from auto",
        ),
        (
            "/symbols/AAPL",
            {"from": "2025-03-14", "to": "2025-03-01"},
            400,
            "'from' (2025-03-14) is after 'to'",
        ),
        ("/symbols/AAPL", {"from": "1990-01-01", "to": "2025-03-01"}, 400, "at most 7320 in one chart"),
        (
            "/symbols/AAPL",
            {"session": "2025-03-14", "to": "2025-03-14"},
            400,
            "either 'session' or 'from'/'to'",
        ),
        ("/sessions/NASDQ/2025-03-14", {}, 404, "No trading calendar for exchange 'NASDQ'"),
        ("/sessions/NASDAQ/2025-13-01", {}, 400, "'day' must be a valid calendar date"),
    ],
)
def test_bad_query_parameters_get_a_4xx_page_saying_what_was_wrong(
    scenario, client, path, params, status, message
):
    response = client.get(path, params=params)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert message in html.unescape(re.search(r"<p id='error'>(.*?)</p>", response.text).group(1))
    if path.startswith("/symbols/"):
        api = client.get(path.replace("/symbols/", "/api/symbols/") + "/candles", params=params)
        assert api.status_code == status and message in api.json()["detail"]


def test_the_session_page_lists_each_symbols_status_and_links_its_chart(scenario, client):
    response = client.get(f"/sessions/nasdaq/{SESSION.isoformat()}")
    assert response.status_code == 200
    page = response.text
    assert "<a href='/market-data/symbols/AAPL?session=2025-03-14'>AAPL</a>" in page
    statuses = dict(re.findall(r"data-timeframe='(\w+)' data-status='(\w+)'", page[: page.index("MSFT")]))
    assert statuses == {"1day": "complete", "1hour": "not_collected", "5min": "complete", "1min": "complete"}
    assert "OLD" not in page  # inactive


def test_heatmap_cells_and_failures_link_to_the_session_and_the_symbol(week, client):
    page = client.get("/", params={"from": "2025-01-13", "to": "2025-01-20"}).text
    assert "<a href='/market-data/sessions/NASDAQ/2025-01-14'>1/2</a>" in page
    assert "<a href='/market-data/symbols/MSFT?session=2025-01-14'>MSFT</a>" in page


def test_plotly_is_served_from_the_installed_package(client):
    response = client.get("/static/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.text.startswith("/**\n* plotly.js v") and len(response.content) > 1_000_000
