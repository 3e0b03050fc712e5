"""Alerts that arrive: the market-data database down, one channel failing, a redirect, the heartbeat.

Real SMTP (aiosmtpd), real HTTP servers on loopback, real PostgreSQL. See docs/operations.md#alerts.
"""

from __future__ import annotations

import datetime as dt
import socket
import types
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from ibkr_market_data import alerts
from tests.fixtures.airflow_stack import free_port
from tests.integration.operations.conftest import DAILY, running_http_sink

THREE_HOURS = dt.timedelta(hours=3)
#: A delay no date of the scenario is overdue by: the watchdog finds no new gap.
NOTHING_DUE = dt.timedelta(days=30)
AS_OF = dt.datetime(2025, 1, 17, 12, 0, tzinfo=dt.UTC)
RUN_ID = "scheduled__2025-01-13"
FIFTEEN_MINUTES = dt.timedelta(minutes=15)


def run_context(run_id: str = RUN_ID) -> dict:
    """Return a DAG failure callback's context when the run has a last task instance."""
    return {"dag_run": types.SimpleNamespace(dag_id=DAILY, run_id=run_id), "reason": "task_failure"}


def texts(sink) -> list[str]:
    return [payload["text"] for _, payload in sink.posts]


@pytest.fixture(params=["closed port", "missing database", "silent server"])
def stopped_market_db(request, market_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point ``market_data_db`` at a database that cannot be read, in each of three ways.

    Nothing listens on the port; the server has no database by that name; a server accepts the
    connection and never answers.
    """
    if request.param == "closed port":
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/market_data"
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", url)
        yield url
    elif request.param == "missing database":
        url = urlsplit(market_db)._replace(path="/no_such_market_data").geturl()
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", url)
        yield url
    else:
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/market_data"
            monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", url)
            yield url


@pytest.mark.timeout(60)  # the silent server hangs a read without a connect timeout
def test_with_the_database_down_a_failed_run_still_alerts_by_email_and_webhook(
    stopped_market_db, smtp_sink, http_sink
):
    alerts.MarketDataFailureNotifier()(run_context())

    assert [message["Subject"] for message in smtp_sink.messages] == [f"{DAILY} run {RUN_ID} failed"]
    [text] = texts(http_sink)
    assert text.startswith(f"*{DAILY} run {RUN_ID} failed*\n")
    assert "Airflow says: task_failure" in text
    assert "Failed symbols unknown: the market-data database could not be read" in text


def test_a_callback_context_without_dag_run_still_alerts(week, http_sink):
    # What the DAG processor hands over when the run has no last task instance.
    context = {"dag": types.SimpleNamespace(dag_id=DAILY), "run_id": RUN_ID, "reason": "timed out"}
    alerts.MarketDataFailureNotifier()(context)
    [text] = texts(http_sink)
    assert text.startswith(f"*{DAILY} run {RUN_ID} failed: 2 symbols failed*\n")
    assert "Airflow says: timed out" in text
    assert "MSFT 2025-01-14: No market data permissions (IB 354, try 1)" in text


def test_a_failing_webhook_is_retried_by_the_watchdog_without_repeating_the_email(
    week, smtp_sink, http_sink, db_conn
):
    http_sink.status = 500
    alerts.MarketDataFailureNotifier()(run_context())
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 1  # the webhook refused it

    http_sink.status = 200
    alerts.run_watchdog(db_conn, AS_OF, NOTHING_DUE)
    assert len(smtp_sink.messages) == 1  # the email is not repeated
    assert len(http_sink.posts) == 2 and texts(http_sink)[1] == texts(http_sink)[0]
    assert texts(http_sink)[1].startswith(f"*{DAILY} run {RUN_ID} failed: 2 symbols failed*")

    alerts.run_watchdog(db_conn, AS_OF + FIFTEEN_MINUTES, NOTHING_DUE)
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 2  # delivered once, done


def test_a_freshness_alert_is_not_repeated_when_its_webhook_fails(week, smtp_sink, http_sink, db_conn):
    http_sink.status = 500
    first = alerts.run_watchdog(db_conn, AS_OF, THREE_HOURS)
    assert len(first.new_gaps) == 8
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 1

    http_sink.status = 200
    again = alerts.run_watchdog(db_conn, AS_OF + FIFTEEN_MINUTES, THREE_HOURS)
    assert again.new_gaps == [] and again.still_open == 8  # the gaps were recorded as announced
    assert len(smtp_sink.messages) == 1
    assert len(http_sink.posts) == 2 and texts(http_sink)[1] == texts(http_sink)[0]
    assert "- LATE NASDAQ 2025-01-14" in texts(http_sink)[1]

    alerts.run_watchdog(db_conn, AS_OF + 2 * FIFTEEN_MINUTES, THREE_HOURS)
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 2


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirecting_webhook_is_not_delivered(http_sink, status):
    http_sink.status = status
    http_sink.location = "/moved"
    outcomes = alerts.send_alert("subject", "text")
    assert len(http_sink.posts) == 1
    assert http_sink.gets == []  # the redirect was not followed
    assert [(outcome.channel, outcome.delivered) for outcome in outcomes] == [("webhook", False)]
    assert f"answered {status}" in outcomes[0].detail


def test_the_heartbeat_is_pinged_by_healthy_watchdog_passes_only(week, http_sink, monkeypatch, db_conn):
    params = {"delay_minutes": 180, "lookback_days": 7}
    with running_http_sink() as heartbeat:
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_HEARTBEAT", heartbeat.url)
        ping = urlsplit(heartbeat.url).path

        assert alerts.watchdog_task(params, AS_OF)["new_gaps"] == 8
        assert heartbeat.gets == [ping]  # announced and delivered: healthy

        http_sink.status = 500  # a failed run's alert the webhook refuses: owed, not delivered
        alerts.MarketDataFailureNotifier()(run_context())
        alerts.watchdog_task(params, AS_OF + FIFTEEN_MINUTES)
        assert heartbeat.gets == [ping]

        http_sink.status = 200  # the next pass delivers it
        alerts.watchdog_task(params, AS_OF + 2 * FIFTEEN_MINUTES)
        assert heartbeat.gets == [ping, ping]

        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
        with pytest.raises(psycopg.OperationalError):
            alerts.watchdog_task(params, AS_OF + 3 * FIFTEEN_MINUTES)
        assert heartbeat.gets == [ping, ping]
        assert heartbeat.posts == []
