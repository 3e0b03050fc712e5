"""Finding a PostgreSQL server for the local stack and the tests.

In order: the server of the configured ``market_data_db`` connection (``AIRFLOW_CONN_MARKET_DATA_DB``);
else the local one on 127.0.0.1:5432 if it answers; else an embedded PostgreSQL (the ``pgserver``
wheel) started in ``.local/pgdata``. Only the tests and the local stack use this module.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_DATA_DIR = Path(__file__).resolve().parents[2] / ".local" / "pgdata"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _libpq_url(url: str) -> str:
    """Rewrite an Airflow connection URI (``postgres://``, ``postgresql+psycopg://``) as libpq accepts it."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def configured_url() -> str | None:
    """Return ``AIRFLOW_CONN_MARKET_DATA_DB`` as a libpq URL, or None when it is not set."""
    url = os.environ.get("AIRFLOW_CONN_MARKET_DATA_DB")
    return _libpq_url(url) if url else None


_embedded_server = None


def embedded_server_url() -> str:
    """Start (once per process) the embedded PostgreSQL and return its URL."""
    global _embedded_server
    if _embedded_server is None:
        import pgserver

        EMBEDDED_DATA_DIR.mkdir(parents=True, exist_ok=True)
        _embedded_server = pgserver.get_server(EMBEDDED_DATA_DIR, cleanup_mode="stop")
        log.info("Started embedded PostgreSQL in %s", EMBEDDED_DATA_DIR)
    return _embedded_server.get_uri()


def server_url() -> str:
    """Return a URL to a server we may create databases on, found as the module docstring says."""
    configured = configured_url()
    if configured:
        return configured
    if _answers(LOCAL_SERVER_URL):
        return LOCAL_SERVER_URL
    return _libpq_url(embedded_server_url())


def create_database(server: str, prefix: str = "ibkr_market_data_test") -> str:
    """Create a new, uniquely named database on ``server``; returns its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(_with_database(server, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(server, name)


def ensure_database(server: str, name: str) -> str:
    """Return the URL of database ``name`` on ``server``, created if missing (never dropped or emptied)."""
    with psycopg.connect(_with_database(server, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(server, name)


def drop_database(url: str) -> None:
    """Drop a database this module created (its name must carry our test prefix)."""
    name = urlsplit(url).path.lstrip("/")
    if not name.startswith("ibkr_market_data_test_"):
        raise ValueError(f"Refusing to drop {name!r}: not a throwaway test database")
    with psycopg.connect(_with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
