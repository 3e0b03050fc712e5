"""A database that cannot answer: the dashboard fails fast (503 + Retry-After), Airflow's heartbeats go on.

In-process tests bound the dashboard's own connections; one test holds a lock on ``market_data`` under a
real API server while a running task heartbeats and the dashboard is polled, and measures both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import psycopg
from fastapi.testclient import TestClient

from ibkr_market_data.dashboard.app import create_app
from tests.fixtures.airflow_stack import FabStack

log = logging.getLogger(__name__)


@contextmanager
def locked_market_data(url: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on ``market_data`` (no read gets through) until the block ends."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE market_data IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


@contextmanager
def silent_server() -> Iterator[int]:
    """Listen on a loopback port that accepts connections and never answers: a hung database server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def timed_get(client: TestClient, path: str, deadline: float) -> tuple[httpx.Response | None, float]:
    """GET ``path`` on a thread; return the response (None if none in ``deadline`` s) and its seconds."""
    result: list[httpx.Response] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(client.get(path)), daemon=True)
    thread.start()
    thread.join(deadline)
    return (result[0] if result else None), time.monotonic() - started


def test_the_dashboards_connections_carry_its_timeouts_and_the_collectors_do_not(market_db, monkeypatch):
    # The connection's own options (as docs/configuration.md advises) are kept, but the dashboard's win.
    own = quote("-c statement_timeout=60000 -c application_name=from_the_extra")
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", f"{market_db}?options={own}")
    from ibkr_market_data.dashboard.database import open_dashboard_connection
    from ibkr_market_data.dashboard.limits import DashboardLimits
    from ibkr_market_data.tasks.database import open_market_connection

    limits = DashboardLimits(statement_timeout=2.5, lock_timeout=0.5)
    with open_dashboard_connection(limits) as conn:
        settings = [
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in (
                "statement_timeout",
                "lock_timeout",
                "default_transaction_read_only",
                "application_name",
            )
        ]
        assert settings == ["2500ms", "500ms", "on", "from_the_extra"]
    with open_market_connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1min"
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"


def test_a_locked_table_is_a_503_with_retry_after_within_the_lock_timeout(week, market_db, monkeypatch):
    monkeypatch.setenv("IBKR_DASHBOARD_LOCK_TIMEOUT_SECONDS", "0.5")
    app = create_app(require_auth=False)
    with TestClient(app, root_path="/market-data") as client, locked_market_data(market_db):
        response, seconds = timed_get(client, "/api/coverage?from=2025-01-13&to=2025-01-17", deadline=15)
        page, page_seconds = timed_get(client, "/?from=2025-01-13&to=2025-01-17", deadline=15)
    assert response is not None, "no answer in 15 s: the request waits for the lock"
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert seconds < 3, seconds
    assert "market_data_db" in response.json()["detail"]
    assert page is not None and page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert page_seconds < 3, page_seconds


def test_a_server_that_never_answers_is_a_503_within_the_connect_timeout(monkeypatch):
    monkeypatch.setenv("IBKR_DASHBOARD_CONNECT_TIMEOUT_SECONDS", "2")
    app = create_app(require_auth=False)
    # The server closes first: a request still waiting for it then ends, and so does the client.
    with TestClient(app, root_path="/market-data") as client, silent_server() as port:
        monkeypatch.setenv(
            "AIRFLOW_CONN_MARKET_DATA_DB", f"postgresql://market:x@127.0.0.1:{port}/market_data"
        )
        response, seconds = timed_get(client, "/api/runs", deadline=15)
    assert response is not None, "no answer in 15 s: the connection waits for the server"
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert seconds < 6, seconds


def test_beyond_the_cap_requests_are_refused_at_once(week, market_db, monkeypatch):
    """With 2 allowed and the table locked, 2 of 10 concurrent requests wait the lock timeout, 8 do not."""
    monkeypatch.setenv("IBKR_DASHBOARD_MAX_REQUESTS", "2")
    monkeypatch.setenv("IBKR_DASHBOARD_LOCK_TIMEOUT_SECONDS", "2")
    app = create_app(require_auth=False)

    async def poll() -> list[tuple[int, str, str | None, float]]:
        transport = httpx.ASGITransport(app=app, root_path="/market-data")
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:

            async def one() -> tuple[int, str, str | None, float]:
                started = time.monotonic()
                response = await client.get("/api/coverage?from=2025-01-13&to=2025-01-17")
                return (
                    response.status_code,
                    response.json()["detail"],
                    response.headers.get("Retry-After"),
                    time.monotonic() - started,
                )

            return await asyncio.gather(*(one() for _ in range(10)))

    answered: list[list[tuple[int, str, str | None, float]]] = []
    with locked_market_data(market_db):  # released even when the requests still wait for it
        thread = threading.Thread(target=lambda: answered.append(asyncio.run(poll())), daemon=True)
        thread.start()
        thread.join(20)
    assert answered, "no answers in 20 s: the requests wait for the lock"
    answers = answered[0]
    busy = [seconds for status, detail, _, seconds in answers if "busy" in detail]
    timed_out = [seconds for status, detail, _, seconds in answers if "did not answer" in detail]
    assert {status for status, *_ in answers} == {503}
    assert {retry for _, _, retry, _ in answers} == {"5"}
    assert (len(busy), len(timed_out)) == (8, 2), answers
    assert max(busy) < 1.0 and all(1.5 < seconds < 5 for seconds in timed_out), answers


# -- A real API server: a locked table, a running task's heartbeats and the dashboard polled at once --------

POLLERS = 48  # more than AnyIO's 40 shared threads, which the Execution API's heartbeats need too
POLL_PACE = 2.0  # seconds each poller waits after an answer: a polling page, not a flood
WINDOW = 20.0  # seconds measured


def running_freshness_instance(metadata_db: str, market_db: str) -> tuple[str, dt.datetime]:
    """Return a running ``market_data_freshness`` task that heartbeats and waits for market_data's lock."""
    deadline = time.monotonic() + 180
    with (
        psycopg.connect(metadata_db, autocommit=True) as meta,
        psycopg.connect(market_db, autocommit=True) as mkt,
    ):
        while time.monotonic() < deadline:
            row = meta.execute(
                "SELECT id::text, last_heartbeat_at FROM task_instance "
                "WHERE dag_id = 'market_data_freshness' AND state = 'running' "
                "AND last_heartbeat_at IS NOT NULL"
            ).fetchone()
            waiting = mkt.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'market_data' AND NOT l.granted"
            ).fetchone()[0]
            if row and waiting:
                return row[0], row[1]
            time.sleep(0.5)
    raise AssertionError("no running market_data_freshness task waiting on market_data within 180 s")


def sample(
    base_url: str, headers: dict[str, str], path: str, stop: threading.Event, pace: float
) -> list[tuple[int | None, str | None, float]]:
    """GET ``path`` until ``stop``, ``pace`` s after each answer; return each (status, Retry-After, seconds).

    A request with no answer in the window and a margin counts as status None, and ends the sampling.
    """
    answers: list[tuple[int | None, str | None, float]] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=WINDOW + 10) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = client.get(path)
            except httpx.TimeoutException:
                answers.append((None, None, time.monotonic() - started))
                break
            answers.append(
                (response.status_code, response.headers.get("Retry-After"), time.monotonic() - started)
            )
            stop.wait(pace)
    return answers


def test_a_locked_market_data_fails_the_dashboard_fast_and_heartbeats_keep_flowing(
    fab_airflow_stack: FabStack,
):
    stack = fab_airflow_stack.airflow
    headers = {"Authorization": f"Bearer {stack.token()}"}
    stop = threading.Event()
    dashboard: list[tuple[int | None, str | None, float]] = []
    ui: list[tuple[int | None, str | None, float]] = []

    def poll(path: str, into: list, pace: float) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: into.extend(sample(stack.base_url, headers, path, stop, pace)), daemon=True
        )
        thread.start()
        return thread

    heartbeats: list[dt.datetime] = []
    with locked_market_data(fab_airflow_stack.market_db):
        stack.unpause("market_data_freshness")
        stack.trigger("market_data_freshness")
        ti_id, first_beat = running_freshness_instance(
            fab_airflow_stack.metadata_db, fab_airflow_stack.market_db
        )
        threads = [poll("/market-data/api/freshness", dashboard, POLL_PACE) for _ in range(POLLERS)]
        # A sync route of Airflow's own API: it needs one of the shared threads too, as the UI does.
        threads.append(poll("/api/v2/dags/market_data_freshness", ui, 0.2))
        started = time.monotonic()
        with psycopg.connect(fab_airflow_stack.metadata_db, autocommit=True) as meta:
            while time.monotonic() - started < WINDOW:
                beat = meta.execute(
                    "SELECT last_heartbeat_at FROM task_instance WHERE id = %s", (ti_id,)
                ).fetchone()[0]
                if beat is not None and (not heartbeats or beat != heartbeats[-1]):
                    heartbeats.append(beat)
                stop.wait(0.2)
            window_end = dt.datetime.now(dt.UTC)
        stop.set()
        for thread in threads:
            thread.join(timeout=WINDOW + 15)
    gaps = [
        (later - earlier).total_seconds() for earlier, later in zip(heartbeats, heartbeats[1:], strict=False)
    ]
    stale_at_end = (window_end - heartbeats[-1]).total_seconds() if heartbeats else WINDOW
    seconds = sorted(seconds for _, _, seconds in dashboard)
    ui_seconds = sorted(seconds for _, _, seconds in ui)
    log.warning(
        "Lock held, %d pollers for %.0f s: %d dashboard answers %s, latency median %.3f s, max %.3f s; "
        "heartbeats %d, max gap %.2f s, stale at end %.2f s; Airflow API %s, median %.3f s, max %.3f s",
        POLLERS,
        WINDOW,
        len(dashboard),
        sorted({str(status) for status, _, _ in dashboard}),
        statistics.median(seconds),
        seconds[-1],
        len(heartbeats),
        max(gaps, default=float("nan")),
        stale_at_end,
        sorted({str(status) for status, _, _ in ui}),
        statistics.median(ui_seconds),
        ui_seconds[-1],
    )
    assert len(dashboard) >= POLLERS * 2, len(dashboard)  # every poller was answered, and polled again
    assert {status for status, _, _ in dashboard} == {503}
    assert {retry for _, retry, _ in dashboard} == {"5"}
    # Fast: a lock timeout (1 s) at most, against statement timeout x requests were each one to wait.
    assert seconds[-1] < 4, seconds[-5:]
    assert heartbeats and first_beat <= heartbeats[0]
    assert max(gaps, default=0) < 5 and stale_at_end < 5, (gaps, stale_at_end)  # heartbeats every 1 s
    assert {status for status, _, _ in ui} == {200} and ui_seconds[-1] < 5, ui_seconds[-5:]
