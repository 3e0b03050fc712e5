"""Apply the versioned schema migrations (Alembic) to the market-data database.

See docs/schema.md.
"""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """Return a libpq or Airflow-style URL as SQLAlchemy's psycopg 3 dialect wants it."""
    scheme, rest = url.split("://", 1)
    return "postgresql+psycopg://" + rest if scheme.startswith("postgres") else url


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; a no-op when it is there already."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    command.upgrade(config, revision)
