"""Alembic migrations of the market-data schema, applied by ``schema.upgrade``. See docs/schema.md."""
