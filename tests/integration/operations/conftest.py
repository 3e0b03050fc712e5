"""The operations tests' scenario, written straight into the market-data tables.

Week of 2025-01-13 (Monday) to 2025-01-20 (US holiday: MLK day, ASX trades). Symbols: AAPL and
MSFT on NASDAQ, SPY on ARCA, BHP on ASX, GYG on ASX with data from 2025-01-15 only, and an
inactive NASDAQ symbol that must never count.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.fixtures.airflow_stack import free_port

D13, D14, D15, D16, D17, D20 = (dt.date(2025, 1, day) for day in (13, 14, 15, 16, 17, 20))
DAILY = "daily_market_data"

SYMBOLS = {
    # symbol: (primary exchange, currency, active, first available date)
    "AAPL": ("NASDAQ", "USD", True, None),
    "MSFT": ("NASDAQ", "USD", True, None),
    "SPY": ("ARCA", "USD", True, None),
    "BHP": ("ASX", "AUD", True, None),
    "GYG": ("ASX", "AUD", True, dt.date(2025, 1, 15)),
    "OLD": ("NASDAQ", "USD", False, None),
}


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def insert_symbols(conn: Any) -> dict[str, int]:
    ids = {}
    for con_id, (symbol, (exchange, currency, active, first)) in enumerate(SYMBOLS.items(), start=1):
        row = conn.execute(
            """
            INSERT INTO symbols (symbol, exchange, primary_exchange, currency, con_id, active,
                                 first_available_date)
            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
            """,
            (symbol, "ASX" if exchange == "ASX" else "SMART", exchange, currency, con_id, active, first),
        ).fetchone()
        ids[symbol] = row[0]
    return ids


def insert_bar(conn: Any, symbol_id: int, day: dt.date, close: float = 10.0) -> None:
    conn.execute(
        """
        INSERT INTO market_data (symbol_id, timestamp, timeframe, open, high, low, close, volume)
        VALUES (%s, %s, '1day', %s, %s, %s, %s, 1000)
        """,
        (symbol_id, midnight(day), close, close + 1, close - 1, close),
    )


def insert_attempt(
    conn: Any,
    symbol_id: int,
    day: dt.date,
    status: str,
    *,
    run_id: str = "scheduled__2025-01-13",
    try_number: int = 1,
    first_day: dt.date | None = None,
    error_code: int | None = None,
    error_message: str | None = None,
    request_seconds: float | None = None,
    records: int = 0,
    requests: int = 1,
    started_at: dt.datetime | None = None,
    seconds: float = 1.0,
) -> None:
    started = started_at or midnight(day) + dt.timedelta(hours=22)
    conn.execute(
        """
        INSERT INTO collection_logs (symbol_id, collection_type, timeframe, start_date, end_date, status,
                                     error_message, records_collected, started_at, completed_at,
                                     error_code, dag_id, run_id, try_number, requests_sent, request_seconds)
        VALUES (%s, 'historical', '1day', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            symbol_id,
            midnight(first_day or day),
            midnight(day),
            status,
            error_message,
            records,
            started,
            started + dt.timedelta(seconds=seconds),
            error_code,
            DAILY,
            run_id,
            try_number,
            requests if status != "skipped" else 0,
            request_seconds,
        ),
    )


def clear_operations_tables(conn: Any) -> None:
    """Empty the tables of migration 0004 that the shared fixture does not empty."""
    conn.execute("TRUNCATE run_metrics, freshness_alerts")
    conn.commit()


@pytest.fixture
def week(db_conn: psycopg.Connection) -> dict[str, int]:
    """Store the scenario the expectations below are written for (see each line)."""
    clear_operations_tables(db_conn)
    ids = insert_symbols(db_conn)
    for symbol in ("AAPL", "MSFT", "SPY", "BHP", "OLD"):  # 13th: all stored (OLD is inactive)
        insert_bar(db_conn, ids[symbol], D13)
    insert_bar(db_conn, ids["AAPL"], D14)  # 14th: MSFT fails, SPY has no data (settled)
    insert_bar(db_conn, ids["BHP"], D14)
    insert_attempt(
        db_conn, ids["MSFT"], D14, "failed", error_code=354, error_message="No market data permissions"
    )
    insert_attempt(
        db_conn, ids["SPY"], D14, "no_data", error_code=162, error_message="HMDS query returned no data"
    )
    # Answered empty again the next day: settled, so it counts as complete.
    db_conn.execute(
        """
        INSERT INTO no_data_sessions
            (symbol_id, timeframe, session, reason, first_seen, last_seen, settled_at)
        VALUES (%s, '1day', %s, 'no data from IB', %s, %s, %s)
        """,
        (
            ids["SPY"],
            D14,
            midnight(D14) + dt.timedelta(hours=22),
            midnight(D15) + dt.timedelta(hours=22),
            midnight(D15) + dt.timedelta(hours=22),
        ),
    )
    insert_bar(db_conn, ids["BHP"], D15)  # 15th: GYG's first date fails; MSFT fails, then succeeds
    insert_attempt(db_conn, ids["GYG"], D15, "failed", error_code=None, error_message="Timed out after 20 s")
    insert_attempt(db_conn, ids["MSFT"], D15, "failed", run_id="scheduled__2025-01-15", error_code=162)
    insert_attempt(db_conn, ids["MSFT"], D15, "completed", run_id="scheduled__2025-01-15", try_number=2)
    insert_bar(db_conn, ids["MSFT"], D15)
    db_conn.commit()
    return ids


class HttpSink:
    """A real HTTP server on loopback keeping the JSON of every POST; ``received`` is set on each.

    Every POST is kept, whatever ``status`` it is answered with (``location`` goes with a redirect);
    ``gets`` keeps the path of every GET (a heartbeat ping, a followed redirect).
    """

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.gets: list[str] = []
        self.status = 200
        self.location = ""
        self.received = threading.Condition()
        self.url = ""

    def wait_for_text(self, needle: str, timeout: float) -> list[str]:
        """Return the texts of the posts containing ``needle`` once there is one (none after ``timeout``)."""

        def matching() -> list[str]:
            return [payload["text"] for _, payload in self.posts if needle in payload.get("text", "")]

        with self.received:
            self.received.wait_for(matching, timeout)
            return matching()


@contextmanager
def running_http_sink() -> Iterator[HttpSink]:
    sink = HttpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with sink.received:
                sink.posts.append((self.path, json.loads(body)))
                sink.received.notify_all()
            self.send_response(sink.status)
            if sink.location:
                self.send_header("Location", sink.location)
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:  # noqa: N802
            with sink.received:
                sink.gets.append(self.path)
                sink.received.notify_all()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_port}/services/T0/B0/x"
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpSink]:
    """Yield a sink configured as the ``market_data_alerts_webhook`` connection."""
    with running_http_sink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_ALERTS_WEBHOOK", sink.url)
        yield sink


class SmtpSink:
    """Keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": controller.port,
                "extra": {"from_email": "alerts@example.com", "disable_tls": True, "disable_ssl": True},
            }
        ),
    )
    monkeypatch.setenv("IBKR_ALERT_EMAIL_TO", "ops@example.com, desk@example.com")
    try:
        yield sink
    finally:
        controller.stop()
