"""A daily run whose connections carry passwords.

No log line (task logs, the dag.test output, the CLI's report) shows a password or a URI with
credentials.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.integration.conftest import SMALL_UNIVERSE

URI_WITH_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


@pytest.fixture
def db_role_with_password(market_db):
    """Create a login role with a password, granted the test database; yield (role, password)."""
    role = f"ibkr_secret_{secrets.token_hex(4)}"
    password = f"Db-{secrets.token_hex(8)}-pw"
    database = urlsplit(market_db).path.lstrip("/")
    with psycopg.connect(market_db, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
        conn.execute(
            sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(role))
        )
        for grant in (
            "GRANT ALL ON SCHEMA public TO {}",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO {}",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}",
        ):
            conn.execute(sql.SQL(grant).format(sql.Identifier(role)))
    yield role, password
    with psycopg.connect(market_db, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_daily_run_logs_no_password_and_no_credentialed_uri(
    daily_dag, small_universe, market_db, ibkr_connection, db_role_with_password, monkeypatch, caplog, capfd
):
    from ibkr_market_data import cli

    role, db_password = db_role_with_password
    ib_password = f"Ib-{secrets.token_hex(8)}-pw"
    parts = urlsplit(market_db)
    market_url = urlunsplit(
        parts._replace(netloc=f"{role}:{db_password}@{parts.hostname}:{parts.port or 5432}")
    )
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", market_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://collector:{ib_password}@{ibkr_connection.host}:{ibkr_connection.port}"
        "?client_id=10&client_id_range=32&connect_timeout=5&request_timeout=10",
    )
    caplog.set_level(logging.DEBUG)
    day = dt.date(2025, 1, 15)

    dag_run = daily_dag.test(run_conf={"date": day.isoformat()})
    cli.print_run_summary(daily_dag.dag_id, dag_run.run_id)
    # The CLI's bad-input path too: its one error line names the input, not the connection.
    assert cli.main(["collect", "--date=2025-01-18"]) == 2

    assert dag_run.state == "success"
    # The run went through the role with the password: the stored bars are there.
    with psycopg.connect(market_url) as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]
        stored = conn.execute(
            "SELECT COUNT(*) FROM market_data WHERE timestamp = %s", (dt.datetime.combine(day, dt.time()),)
        ).fetchone()[0]
    assert (user, stored) == (role, len(SMALL_UNIVERSE))

    captured = capfd.readouterr()
    output = "\n".join(
        [captured.out, captured.err, *(record.getMessage() for record in caplog.records), caplog.text]
    )
    assert "state" in output.lower() or "Trading date" in output  # the logs were captured at all
    assert "Trading date 2025-01-15" in output
    for password in (db_password, ib_password):
        assert password not in output
    assert URI_WITH_CREDENTIALS.findall(output) == []


def test_the_credentialed_uri_pattern_catches_a_leak():
    assert URI_WITH_CREDENTIALS.findall("connecting to postgresql://bob:hunter2@db:5432/market_data")
    assert not URI_WITH_CREDENTIALS.findall("ibkr://127.0.0.1:4002?client_id=1 postgresql://bob@db/x")
