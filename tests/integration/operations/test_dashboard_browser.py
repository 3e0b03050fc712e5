"""Headless Chromium reads the dashboard of a running Airflow; what it shows is checked against the database.

Needs Debian's ``chromium`` (``make test`` installs it when /usr/bin/chromium is missing). The
screenshot is kept in ``.local/test-artifacts/dashboard.png`` (``docs/dashboard.png`` is one of them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ibkr_market_data import coverage, repository
from ibkr_market_data_dev.local_env import REPO_ROOT
from ibkr_market_data_dev.simulated_ib import stored_bar
from tests.integration.operations.conftest import HttpSink, running_http_sink

pytestmark = pytest.mark.scheduler

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / ".local" / "test-artifacts"
FIRST, LAST = dt.date(2025, 2, 17), dt.date(2025, 3, 14)
RUN_DATE = dt.date(2025, 3, 14)  # collected by a real run in which MSFT fails
DAG_ID = "daily_market_data"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def alert_sink(airflow_stack) -> Iterator[HttpSink]:
    """Yield a webhook sink, configured in the stack's metadata as ``market_data_alerts_webhook``."""
    with running_http_sink() as sink:
        airflow_stack._request(
            "POST",
            "/api/v2/connections",
            {"connection_id": "market_data_alerts_webhook", "conn_type": "http", "host": sink.url},
        )
        try:
            yield sink
        finally:
            airflow_stack._request("DELETE", "/api/v2/connections/market_data_alerts_webhook")


@pytest.fixture(scope="module")
def collected(airflow_stack, stack_market_db, stack_simulator, alert_sink) -> str:
    """Write the weeks before RUN_DATE directly, then collect RUN_DATE by the scheduler with MSFT failing."""
    with psycopg.connect(stack_market_db) as conn:
        symbols = conn.execute("SELECT id, symbol, primary_exchange FROM symbols WHERE active").fetchall()
        for symbol_id, symbol, exchange in symbols:
            days = [day for day in coverage.trading_dates([exchange], FIRST, RUN_DATE - dt.timedelta(days=1))]
            # BHP misses one session, so the heatmap has an incomplete cell that no run explains.
            bars = [
                stored_bar(stack_simulator.model.daily_bar(symbol, day))
                for day in days
                if not (symbol == "BHP" and day == dt.date(2025, 3, 5))
            ]
            repository.upsert_bars(conn, symbol_id, "1day", [bar for bar in bars if bar is not None])
        conn.commit()
    airflow_stack.wait_for_dag(DAG_ID)
    airflow_stack.unpause(DAG_ID)
    # Unpausing lets the scheduler start the latest date's scheduled run, which the session's other
    # tests expect to succeed: it finishes before MSFT is made to fail.
    scheduled = airflow_stack.wait_for_scheduled_run(DAG_ID)
    airflow_stack.wait_for_run(DAG_ID, scheduled["dag_run_id"], 600)
    stack_simulator.faults.set("MSFT", no_permission=True)
    try:
        run_id = airflow_stack.trigger(DAG_ID, {"date": RUN_DATE.isoformat()})
        run = airflow_stack.wait_for_run(DAG_ID, run_id, 600)
    finally:
        stack_simulator.faults.clear("MSFT")
    assert run["state"] == "failed"
    return run_id


def cells(page) -> list[dict[str, str]]:
    return page.locator("#coverage td[data-exchange]").evaluate_all(
        "cells => cells.map(c => ({...c.dataset, text: c.textContent, css: c.className}))"
    )


def test_the_dashboard_shows_what_the_database_holds(airflow_stack, stack_market_db, collected, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    response = page.goto(
        f"{airflow_stack.base_url}/market-data/?from={FIRST.isoformat()}&to={LAST.isoformat()}"
    )
    assert response is not None and response.status == 200
    with psycopg.connect(stack_market_db) as conn:
        expected = coverage.coverage(conn, FIRST, LAST)
        failures = repository.failures(conn, RUN_DATE, RUN_DATE)
        msft = repository.symbol_row(conn, "MSFT")
        assert msft is not None
        # MSFT failed on RUN_DATE; its latest bar is the latest trading date's (the scheduled run's).
        [(latest_stored,)] = conn.execute(
            "SELECT max(timestamp)::date FROM market_data WHERE symbol_id = %s", (msft["id"],)
        ).fetchall()
        assert msft["latest_bar"] == latest_stored > RUN_DATE
        charted = repository.symbol_bars(conn, msft["id"], FIRST, RUN_DATE)

    shown = {(cell["exchange"], cell["date"]): cell for cell in cells(page)}
    assert set(shown) == {(row.exchange, row.date.isoformat()) for row in expected}
    for row in expected:
        cell = shown[(row.exchange, row.date.isoformat())]
        assert (int(cell["expected"]), int(cell["stored"]), int(cell["failed"]), int(cell["noData"])) == (
            row.expected,
            row.stored,
            row.failed,
            row.no_data,
        ), row
        assert cell["text"] == f"{row.stored}/{row.expected}"
        assert cell["css"] == ("complete" if row.complete else "failed" if row.failed else "partial")
    assert shown[("NASDAQ", RUN_DATE.isoformat())]["css"] == "failed"
    assert shown[("ASX", "2025-03-05")]["css"] == "partial"

    failure_rows = page.locator("#failures tr").all_inner_texts()[1:]
    assert len(failure_rows) == len(failures) >= 1
    assert any(text.startswith("MSFT\tNASDAQ\t2025-03-14\t354\t") for text in failure_rows), failure_rows
    runs = page.locator("#runs tr").all_inner_texts()
    assert any(collected in text and "\tfailed\t" in text for text in runs), runs
    assert page.locator("#metrics tr", has_text=collected).count() >= 2  # ALL and per exchange

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

    page.locator("#failures a", has_text="MSFT").first.click()
    page.wait_for_selector("#chart")
    assert page.url.endswith(f"/market-data/symbols/MSFT?session={RUN_DATE.isoformat()}")
    page.goto(
        f"{airflow_stack.base_url}/market-data/symbols/MSFT?from={FIRST.isoformat()}&to={RUN_DATE.isoformat()}"
    )
    page.wait_for_selector("#chart")
    assert int(page.locator("#chart").get_attribute("data-bars")) == len(charted) >= 18
    assert page.locator("#attempts tr", has_text="354").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-symbol.png"), full_page=True)
    page.close()


def test_a_bad_range_shows_the_reason_not_a_server_error(airflow_stack, browser):
    page = browser.new_page()
    response = page.goto(f"{airflow_stack.base_url}/market-data/?from=2025-02-30")
    assert response is not None and response.status == 400
    assert "'from' must be a valid calendar date" in page.locator("#error").inner_text()
    page.close()


def test_the_failed_run_alerted_through_the_dag_processor(collected, alert_sink):
    # The DAG's on_failure_callback runs in Airflow's DAG processor once the run has failed.
    texts = alert_sink.wait_for_text(collected, timeout=300)
    assert len(texts) == 1, alert_sink.posts
    # The failed request covered MSFT's lookback window, the five sessions up to the date.
    assert "- MSFT 2025-03-10..2025-03-14:" in texts[0] and "(IB 354, try 1)" in texts[0]


def test_airflows_ui_shows_the_dashboard_in_its_plugin_page(airflow_stack, collected, browser):
    """The nav's external view opens /plugin/market-data, which frames /market-data/ inside the UI."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{airflow_stack.base_url}/plugin/market-data")
    frame = page.frame_locator("iframe")
    frame.locator("#coverage").wait_for(timeout=120_000)
    assert page.locator("iframe").first.get_attribute("src").endswith("/market-data/")
    assert frame.locator("h1").inner_text() == "Market data"
    page.screenshot(path=str(ARTIFACTS / "dashboard-in-airflow.png"))
    page.close()
