"""Headless Chromium draws the symbol page's chart, served by uvicorn on loopback with the dashboard app.

Needs Debian's ``chromium`` (``make test`` installs it). The screenshots are kept in
``.local/test-artifacts/`` (``symbol-chart.png``, ``symbol-chart-zoomed.png``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from ibkr_market_data.dashboard.app import create_app
from ibkr_market_data_dev.local_env import REPO_ROOT
from tests.fixtures.airflow_stack import free_port
from tests.integration.operations import chart_scenario
from tests.integration.operations.chart_scenario import SESSION

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / ".local" / "test-artifacts"
#: What the page's chart element holds once Plotly has drawn it: its traces' names and candles.
PLOTTED = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  return chart && chart.data ? {names: chart.data.map(t => t.name), x: chart.data[0].x,
                                timeframe: chart.dataset.timeframe} : null;
}"""


@pytest.fixture
def dashboard_url(market_db: str) -> Iterator[str]:
    """Serve the dashboard at /market-data on loopback, as Airflow's API server mounts it."""
    app = Starlette(
        routes=[
            Mount("/market-data", create_app(connect=lambda: psycopg.connect(market_db), require_auth=False))
        ]
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}/market-data"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
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


def new_page(browser, errors: list[str]):
    """Open a page that keeps its script errors in ``errors``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def test_the_symbol_page_draws_aapls_5min_candles_of_a_session(db_conn, dashboard_url, browser):
    scenario = chart_scenario.store(db_conn)
    [(stored,)] = db_conn.execute(
        """
        SELECT count(*) FROM market_data WHERE symbol_id = %s AND timeframe = '5min'
          AND (timestamp AT TIME ZONE 'UTC' AT TIME ZONE 'America/New_York')::date = %s
        """,
        (scenario["ids"]["AAPL"], SESSION),
    ).fetchall()
    errors: list[str] = []
    page = new_page(browser, errors)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    response = page.goto(f"{dashboard_url}/symbols/AAPL?session={SESSION.isoformat()}&timeframe=5min")
    assert response is not None and response.status == 200
    page.wait_for_load_state()
    assert errors == []
    plotted = page.wait_for_function(PLOTTED).json_value()

    assert stored == 78 and len(plotted["x"]) == stored
    assert plotted["x"][0] == "2025-03-14 09:30" and plotted["x"][-1] == "2025-03-14 15:55"
    assert plotted["names"] == ["5min", "volume", "data-quality findings", "revisions", "corporate actions"]
    assert page.locator("#chart .boxlayer path.box").count() == stored  # drawn, one box per candle
    assert all(url.startswith(dashboard_url) for url in requests), "everything from the dashboard itself"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "symbol-chart.png"), full_page=True)
    assert (ARTIFACTS / "symbol-chart.png").stat().st_size > 20_000
    page.close()


def test_zooming_into_a_session_of_the_daily_chart_draws_its_intraday_bars(db_conn, dashboard_url, browser):
    chart_scenario.store(db_conn)
    errors: list[str] = []
    page = new_page(browser, errors)
    page.goto(f"{dashboard_url}/symbols/AAPL")
    daily = page.wait_for_function(PLOTTED).json_value()
    assert daily["timeframe"] == "1day" and daily["x"][-1] == SESSION.isoformat()

    last = len(daily["x"]) - 1  # as a drag over the last candle does
    zoom = (
        "last => Plotly.relayout(document.getElementById('chart'), {'xaxis.range': [last - 0.4, last + 0.4]})"
    )
    page.evaluate(zoom, last)
    page.wait_for_function("() => document.getElementById('chart').dataset.timeframe === '1min'")
    zoomed = page.evaluate(PLOTTED)
    assert len(zoomed["x"]) == 390 and zoomed["x"][0] == "2025-03-14 09:30"
    assert page.url.endswith("timeframe=auto&from=2025-03-14&to=2025-03-14")
    assert page.locator("#chart-form input[name='from']").input_value() == SESSION.isoformat()
    assert page.locator("#markers tr").count() == 1 + 3  # the session's finding, revision and split
    page.screenshot(path=str(ARTIFACTS / "symbol-chart-zoomed.png"), full_page=True)

    page.locator("#chart .nsewdrag").first.dblclick()  # back to the first range
    page.wait_for_function("() => document.getElementById('chart').dataset.timeframe === '1day'")
    assert errors == []
    page.close()


def test_a_heatmap_cell_leads_to_the_session_and_on_to_the_symbols_chart(db_conn, dashboard_url, browser):
    chart_scenario.store(db_conn)
    page = browser.new_page()
    page.goto(f"{dashboard_url}/?from={SESSION.isoformat()}&to={SESSION.isoformat()}")
    page.locator(f"#coverage td[data-exchange='NASDAQ'][data-date='{SESSION.isoformat()}'] a").click()
    page.wait_for_selector("#session")
    assert page.url.endswith(f"/sessions/NASDAQ/{SESSION.isoformat()}")
    page.locator("#session a", has_text="AAPL").click()
    plotted = page.wait_for_function(PLOTTED).json_value()
    assert plotted["timeframe"] == "1min" and len(plotted["x"]) == 390
    page.close()


def test_a_bad_date_shows_what_was_wrong(db_conn, dashboard_url, browser):
    chart_scenario.store(db_conn)
    page = browser.new_page()
    response = page.goto(f"{dashboard_url}/symbols/AAPL?session=2025-02-30")
    assert response is not None and response.status == 400
    assert "Query parameter 'session' must be a valid calendar date" in page.locator("#error").inner_text()
    page.close()
