"""Alert deliveries: ``alert_deliveries``, one row per (alert, channel), so only a failed channel is retried.

A new table and a partial index on it: online, nothing else is locked. See docs/operations.md#alerts.
Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE alert_deliveries (
            alert_key        TEXT        NOT NULL,
            channel          VARCHAR(16) NOT NULL,
            subject          TEXT        NOT NULL,
            body             TEXT        NOT NULL,
            created_at       TIMESTAMP   NOT NULL DEFAULT NOW(),
            last_attempt_at  TIMESTAMP   NOT NULL DEFAULT NOW(),
            attempts         INTEGER     NOT NULL DEFAULT 1,
            delivered_at     TIMESTAMP,
            last_error       TEXT,
            PRIMARY KEY (alert_key, channel)
        )
        """
    )
    # The watchdog's retry reads only what is still owed: a handful of rows in a growing table.
    op.execute(
        "CREATE INDEX alert_deliveries_undelivered ON alert_deliveries (created_at) "
        "WHERE delivered_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE alert_deliveries")
