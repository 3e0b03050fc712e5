"""The dashboard's views and JSON on a real PostgreSQL: coverage by calendar, runs, failures, bad input."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from ibkr_market_data import coverage, repository
from ibkr_market_data.dashboard.app import create_app
from tests.integration.operations.conftest import D13, D14, D15, D16, D17, D20


@pytest.fixture
def client(market_db: str) -> Iterator[TestClient]:
    app = create_app(connect=lambda: psycopg.connect(market_db), require_auth=False)
    with TestClient(app, root_path="/market-data") as test_client:
        yield test_client


def by_key(rows: list[dict]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    return {
        (row["date"], row["exchange"]): (row["expected"], row["stored"], row["failed"], row["no_data"])
        for row in rows
    }


def test_coverage_counts_expected_by_the_calendars_and_stored_failed_no_data(week, db_conn):
    rows = {(row.date, row.exchange): row for row in coverage.coverage(db_conn, D13, D20)}
    # (expected, stored, failed, no_data)
    expected = {
        (D13, "ARCA"): (1, 1, 0, 0),
        (D13, "ASX"): (1, 1, 0, 0),  # GYG's data starts on the 15th
        (D13, "NASDAQ"): (2, 2, 0, 0),  # OLD is inactive: its bar does not count
        (D14, "ARCA"): (1, 0, 0, 1),
        (D14, "ASX"): (1, 1, 0, 0),
        (D14, "NASDAQ"): (2, 1, 1, 0),
        (D15, "ARCA"): (1, 0, 0, 0),
        (D15, "ASX"): (2, 1, 1, 0),
        (D15, "NASDAQ"): (2, 1, 0, 0),  # MSFT failed on try 1, stored on try 2: not failed
        (D16, "ARCA"): (1, 0, 0, 0),
        (D16, "ASX"): (2, 0, 0, 0),
        (D16, "NASDAQ"): (2, 0, 0, 0),
        (D17, "ARCA"): (1, 0, 0, 0),
        (D17, "ASX"): (2, 0, 0, 0),
        (D17, "NASDAQ"): (2, 0, 0, 0),
        (D20, "ASX"): (2, 0, 0, 0),  # MLK day: the US exchanges do not trade
    }
    assert {key: (r.expected, r.stored, r.failed, r.no_data) for key, r in rows.items()} == expected
    assert rows[(D14, "ARCA")].complete  # settled no data from IB counts as complete
    assert not rows[(D14, "NASDAQ")].complete and rows[(D14, "NASDAQ")].missing == 1


def test_coverage_json_is_one_row_per_trading_date_and_exchange(week, client, db_conn):
    response = client.get("/api/coverage", params={"from": "2025-01-17", "to": "2025-01-20"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["from"] == "2025-01-17" and body["to"] == "2025-01-20"
    assert by_key(body["rows"]) == {
        ("2025-01-17", "ARCA"): (1, 0, 0, 0),
        ("2025-01-17", "ASX"): (2, 0, 0, 0),
        ("2025-01-17", "NASDAQ"): (2, 0, 0, 0),
        ("2025-01-20", "ASX"): (2, 0, 0, 0),
    }
    whole = client.get("/api/coverage", params={"from": "2025-01-13", "to": "2025-01-20"}).json()["rows"]
    assert by_key(whole) == by_key([row.as_json() for row in coverage.coverage(db_conn, D13, D20)])


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"from": "2025-13-01"}, 400, "'from' must be a valid calendar date"),
        ({"from": "yesterday"}, 400, "'from' must be a date as YYYY-MM-DD"),
        ({"to": "2025-01-32"}, 400, "'to' must be a valid calendar date"),
        ({"from": "2025-01-20", "to": "2025-01-13"}, 400, "is after 'to'"),
        ({"from": "2020-01-01", "to": "2025-01-13"}, 400, "at most 400"),
    ],
)
def test_bad_range_is_a_clear_400(week, client, params, status, message):
    for path in ("/api/coverage", "/api/failures", "/"):
        response = client.get(path, params=params)
        assert response.status_code == status, (path, response.text)
        assert message in html.unescape(response.text)


def test_bad_limit_is_422_and_unknown_symbol_404(week, client):
    response = client.get("/api/runs", params={"limit": 0})
    assert response.status_code == 422
    assert "limit" in response.text
    assert client.get("/api/runs", params={"limit": "many"}).status_code == 422
    missing = client.get("/api/symbols/NOPE")
    assert missing.status_code == 404 and "No symbol 'NOPE'" in missing.json()["detail"]
    assert client.get("/symbols/NOPE").status_code == 404


def test_failures_name_symbol_date_code_message_and_try(week, client):
    failures = client.get("/api/failures", params={"from": "2025-01-13", "to": "2025-01-20"}).json()[
        "failures"
    ]
    assert sorted((f["symbol"], f["date"], f["error_code"], f["try_number"]) for f in failures) == [
        ("GYG", "2025-01-15", None, 1),
        ("MSFT", "2025-01-14", 354, 1),
        ("MSFT", "2025-01-15", 162, 1),
    ]
    assert {f["error_message"] for f in failures if f["symbol"] == "GYG"} == {"Timed out after 20 s"}


def test_latest_runs_with_outcome_and_duration(week, client):
    runs = {run["run_id"]: run for run in client.get("/api/runs").json()["runs"]}
    assert set(runs) == {"scheduled__2025-01-13", "scheduled__2025-01-15"}
    first = runs["scheduled__2025-01-13"]
    assert first["outcome"] == "failed" and (first["failed"], first["no_data"]) == (2, 1)
    retried = runs["scheduled__2025-01-15"]
    assert retried["outcome"] == "success" and retried["completed"] == 1 and retried["failed"] == 0
    assert retried["duration_seconds"] == pytest.approx(1.0)


def test_overview_page_shows_the_heatmap_cells_and_failures(week, client):
    response = client.get("/", params={"from": "2025-01-13", "to": "2025-01-20"})
    assert response.status_code == 200
    page = response.text
    assert (
        "data-exchange='NASDAQ' data-date='2025-01-14' data-expected='2' data-stored='1' data-failed='1'"
        in page
    )
    assert "title='NASDAQ does not trade 2025-01-20'" in page
    assert "No market data permissions" in page
    assert "<a href='/market-data/symbols/MSFT?session=2025-01-14'>MSFT</a>" in page


def test_before_any_symbol_is_loaded_the_overview_says_so_instead_of_an_empty_page(client, db_conn):
    """A stack started without a logged-in gateway: symbols wait for the first run that reaches IB."""
    db_conn.execute(
        "INSERT INTO symbols (symbol, exchange, primary_exchange, currency) "
        "VALUES ('AAPL', 'SMART', 'NASDAQ', 'USD')"
    )
    db_conn.commit()  # upserted by a load IB never answered: not loaded yet
    page = client.get("/").text
    assert "<p class='late' id='no-symbols'>No symbols loaded yet:" in page
    assert client.get("/api/freshness").json()["symbols_loaded"] is False


def test_once_ib_resolved_a_symbol_the_overview_has_no_such_notice(week, client):
    assert "id='no-symbols'" not in client.get("/").text
    assert client.get("/api/freshness").json()["symbols_loaded"] is True


def test_symbol_page_charts_its_bars_and_lists_its_attempts(week, client):
    page = client.get("/symbols/msft", params={"from": "2025-01-01", "to": "2025-01-31"})
    assert page.status_code == 200
    assert "data-candles='2'" in page.text  # the 13th and the 15th
    attempts = page.text[page.text.index("id='attempts'") :]
    assert attempts.count("<tr>") == 1 + 3  # the three attempts
    data = client.get("/api/symbols/MSFT", params={"from": "2025-01-01", "to": "2025-01-31"}).json()
    assert [bar["date"] for bar in data["bars"]] == ["2025-01-13", "2025-01-15"]
    assert [a["status"] for a in data["attempts"]] == ["completed", "failed", "failed"]
    search = client.get("/symbols/", params={"symbol": "msft"}, follow_redirects=False)
    assert search.status_code == 303 and search.headers["location"] == "/market-data/symbols/MSFT"


def test_default_range_is_the_last_30_trading_dates():
    start, end = coverage.default_range(["ASX", "NASDAQ"], dt.date(2025, 1, 31))
    dates = coverage.trading_dates(["ASX", "NASDAQ"], start, end)
    assert len(dates) == 30 and end == dt.date(2025, 1, 31)
    assert (
        dt.date(2025, 1, 20) in dates and dt.date(2025, 1, 27) in dates
    )  # MLK day (ASX), Australia Day (US)


def test_freshness_is_late_until_the_due_session_is_complete(week, db_conn):
    # 2025-01-14 22:00 UTC: NASDAQ's 14th closed at 21:00 UTC, due 3 h later, so the 13th is the latest due.
    as_of = dt.datetime(2025, 1, 15, 1, 0, tzinfo=dt.UTC)
    fresh = {row.exchange: row for row in coverage.freshness(db_conn, as_of, dt.timedelta(hours=3))}
    assert fresh["NASDAQ"].due == D14 and fresh["NASDAQ"].latest_complete == D13
    assert fresh["NASDAQ"].status == "late" and fresh["NASDAQ"].due_missing == 1
    assert fresh["ARCA"].due == D14 and fresh["ARCA"].status == "fresh"  # SPY: no data, counted complete
    assert fresh["ASX"].due == D14 and fresh["ASX"].status == "fresh"
    assert repository.open_freshness_alerts(db_conn) == []
