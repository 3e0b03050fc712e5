"""Alerts against a real SMTP server (aiosmtpd) and a real HTTP server on loopback: failed runs, freshness."""

from __future__ import annotations

import datetime as dt
import json
import types

from ibkr_market_data import alerts, repository
from tests.fixtures.airflow_stack import free_port
from tests.integration.operations.conftest import D14, DAILY, HttpSink, insert_attempt, insert_bar

THREE_HOURS = dt.timedelta(hours=3)


def failed_run_context(run_id: str) -> dict:
    """Return what Airflow hands a DAG's on_failure_callback, as far as the notifier reads it."""
    return {"dag_run": types.SimpleNamespace(dag_id=DAILY, run_id=run_id), "reason": "task_failure"}


def test_a_failed_run_sends_one_email_and_one_webhook_naming_symbols_and_reasons(
    week,
    smtp_sink,
    http_sink,
):
    alerts.MarketDataFailureNotifier().notify(failed_run_context("scheduled__2025-01-13"))

    assert len(smtp_sink.messages) == 1
    message = smtp_sink.messages[0]
    assert message["Subject"] == f"{DAILY} run scheduled__2025-01-13 failed: 2 symbols failed"
    assert message["From"] == "alerts@example.com"
    assert sorted(smtp_sink.recipients[0]) == ["desk@example.com", "ops@example.com"]
    body = "".join(
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() == "text/html"
    )
    assert "MSFT 2025-01-14: No market data permissions (IB 354, try 1)" in body
    assert "GYG 2025-01-15: Timed out after 20 s (no IB code, try 1)" in body
    assert "SPY" not in body  # no data is not a failure

    assert len(http_sink.posts) == 1
    path, payload = http_sink.posts[0]
    assert path == "/services/T0/B0/x"
    assert payload["text"].startswith(f"*{DAILY} run scheduled__2025-01-13 failed: 2 symbols failed*\n")
    assert "MSFT 2025-01-14: No market data permissions (IB 354, try 1)" in payload["text"]


def test_an_unfinished_symbol_is_named_too(week, http_sink, db_conn):
    insert_attempt(db_conn, week["AAPL"], D14, "pending", run_id="manual__lost", try_number=2)
    db_conn.commit()
    alerts.MarketDataFailureNotifier().notify(failed_run_context("manual__lost"))
    ((_, payload),) = http_sink.posts
    assert "1 never finished" in payload["text"]
    assert "AAPL 2025-01-14: no outcome (try 2 never finished)" in payload["text"]


def test_without_a_channel_the_alert_is_logged(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MARKET_DATA_ALERTS_WEBHOOK", raising=False)
    assert alerts.send_alert("subject", "text") == []
    assert "not sent: no connection smtp_default or market_data_alerts_webhook" in caplog.text


def test_a_refusing_webhook_is_one_clear_outcome(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_ALERTS_WEBHOOK", f"http://127.0.0.1:{free_port()}/hook")
    [outcome] = alerts.send_alert("subject", "text")
    assert (outcome.channel, outcome.delivered) == ("webhook", False)
    assert outcome.detail.startswith("Webhook market_data_alerts_webhook refused the alert: ")


def test_a_dead_smtp_server_does_not_keep_the_alert_from_the_webhook(http_sink, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": free_port(),
                "extra": {
                    "from_email": "alerts@example.com",
                    "disable_tls": True,
                    "disable_ssl": True,
                    "retry_limit": 1,
                },
            }
        ),
    )
    webhook, email = alerts.send_alert("subject", "text")
    assert (webhook.channel, webhook.delivered) == ("webhook", True)
    assert (email.channel, email.delivered) == ("email", False)
    assert email.detail.startswith("email through smtp_default: ")
    assert [payload["text"] for _, payload in http_sink.posts] == ["*subject*\ntext"]


def posted_lines(sink: HttpSink) -> list[str]:
    return [line for _, payload in sink.posts for line in payload["text"].splitlines()[1:]]


def test_freshness_alerts_once_per_gap_and_once_on_recovery(week, http_sink, db_conn):
    as_of = dt.datetime(2025, 1, 17, 12, 0, tzinfo=dt.UTC)  # Friday noon UTC: the US 17th is not closed yet
    first = alerts.run_watchdog(db_conn, as_of, THREE_HOURS)
    late = sorted(line.split(":")[0] for line in posted_lines(http_sink))
    assert late == [
        "- LATE ARCA 2025-01-15",
        "- LATE ARCA 2025-01-16",
        "- LATE ASX 2025-01-15",
        "- LATE ASX 2025-01-16",
        "- LATE ASX 2025-01-17",
        "- LATE NASDAQ 2025-01-14",
        "- LATE NASDAQ 2025-01-15",
        "- LATE NASDAQ 2025-01-16",
    ]
    assert len(first.new_gaps) == 8 and len(http_sink.posts) == 1
    assert (
        "- LATE NASDAQ 2025-01-14: 1 of 2 symbols missing 3 h after the close (1 stored, 1 failed, 0 no data)"
        in (posted_lines(http_sink))
    )

    again = alerts.run_watchdog(db_conn, as_of + dt.timedelta(minutes=15), THREE_HOURS)
    assert again.new_gaps == [] and again.recovered == [] and again.still_open == 8
    assert len(http_sink.posts) == 1  # nothing repeated

    insert_bar(db_conn, week["MSFT"], D14)  # the NASDAQ 14th completes
    db_conn.commit()
    recovered = alerts.run_watchdog(db_conn, as_of + dt.timedelta(minutes=30), THREE_HOURS)
    assert [(gap.exchange, gap.trading_date) for gap in recovered.recovered] == [("NASDAQ", D14)]
    assert len(http_sink.posts) == 2
    assert http_sink.posts[1][1]["text"].splitlines()[1:] == [
        "- RECOVERED NASDAQ 2025-01-14: complete now (2 symbols)"
    ]

    alerts.run_watchdog(db_conn, as_of + dt.timedelta(minutes=45), THREE_HOURS)
    assert len(http_sink.posts) == 2  # the recovery is said once
    still_open = {(gap.exchange, gap.trading_date) for gap in repository.open_freshness_alerts(db_conn)}
    assert len(still_open) == 7 and ("NASDAQ", D14) not in still_open


def test_webhook_url_forms():
    from airflow.models.connection import Connection

    assert (
        alerts.webhook_url(
            Connection(conn_id="w", conn_type="http", host="hooks.example.com/services/A/B", schema="https")
        )
        == "https://hooks.example.com/services/A/B"
    )
    assert (
        alerts.webhook_url(Connection(conn_id="w", uri="http://127.0.0.1:8099/services/A/B"))
        == "http://127.0.0.1:8099/services/A/B"
    )
    assert (
        alerts.webhook_url(
            Connection(
                conn_id="w",
                conn_type="http",
                host="https://chat.example.com",
                extra='{"endpoint": "/hook/1"}',
            )
        )
        == "https://chat.example.com/hook/1"
    )
