"""A fresh market-data database for every measured repeat, copied from a migrated template.

``template()`` creates and migrates a throwaway database once (the section loads the universe into
it, and the daily section the days before its trading date: ``bench.steady_state``); ``recreate()``
drops the measured database and copies the template into it (``CREATE DATABASE … TEMPLATE …``), so
no repeat finds another's bars. See docs/benchmarks.md#rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from ibkr_market_data import schema
from ibkr_market_data_dev import local_postgres

#: local_postgres only drops databases whose name carries this prefix.
PREFIX = "ibkr_market_data_test_bench"


def database_name(url: str) -> str:
    """Return the database ``url`` names."""
    return urlsplit(url).path.lstrip("/")


def _server_conn(url: str) -> psycopg.Connection:
    parts = urlsplit(url)
    return psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True)


@contextmanager
def template(prefix: str = PREFIX) -> Iterator[str]:
    """Yield the URL of a new, migrated database to copy from; dropped on the way out."""
    url = local_postgres.create_database(local_postgres.server_url(), prefix=f"{prefix}_template")
    try:
        schema.upgrade(url)
        yield url
    finally:
        local_postgres.drop_database(url)


@contextmanager
def measured(template_url: str, prefix: str = PREFIX) -> Iterator[str]:
    """Yield the URL of the database the runs write to, a copy of the template; dropped on the way out."""
    url = local_postgres.create_database(local_postgres.server_url(), prefix=prefix)
    try:
        recreate(url, template_url)
        yield url
    finally:
        local_postgres.drop_database(url)


def recreate(url: str, template_url: str) -> None:
    """Drop the database of ``url`` (closing its sessions) and create it again as a copy of the template."""
    name, source = database_name(url), database_name(template_url)
    if not name.startswith(PREFIX) or name == source:
        raise ValueError(f"Refusing to recreate {name!r}: not a bench database, or the template itself")
    with _server_conn(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source))
        )


def bar_count(url: str) -> int:
    """Return how many bars the database holds (a fresh copy: none)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM market_data").fetchone()
    return int(row[0]) if row else 0
