"""Backfill: sessions IB has no data for, each symbol's first available date, and bar revisions.

See docs/schema.md.
Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE symbols ADD COLUMN first_available_date DATE")
    op.execute(
        """
        CREATE TABLE no_data_sessions (
            symbol_id  INTEGER      NOT NULL REFERENCES symbols(id),
            timeframe  VARCHAR(20)  NOT NULL,
            session    DATE         NOT NULL,
            reason     TEXT         NOT NULL,
            first_seen TIMESTAMP    NOT NULL DEFAULT NOW(),
            last_seen  TIMESTAMP    NOT NULL DEFAULT NOW(),
            dag_id     VARCHAR(250),
            run_id     VARCHAR(250),
            PRIMARY KEY (symbol_id, timeframe, session)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE bar_revisions (
            id             BIGSERIAL     PRIMARY KEY,
            symbol_id      INTEGER       NOT NULL REFERENCES symbols(id),
            timeframe      VARCHAR(20)   NOT NULL,
            timestamp      TIMESTAMP     NOT NULL,
            old_open       NUMERIC(20,8) NOT NULL,
            old_high       NUMERIC(20,8) NOT NULL,
            old_low        NUMERIC(20,8) NOT NULL,
            old_close      NUMERIC(20,8) NOT NULL,
            old_volume     BIGINT        NOT NULL,
            old_wap        NUMERIC(20,8),
            old_bar_count  INTEGER,
            new_open       NUMERIC(20,8) NOT NULL,
            new_high       NUMERIC(20,8) NOT NULL,
            new_low        NUMERIC(20,8) NOT NULL,
            new_close      NUMERIC(20,8) NOT NULL,
            new_volume     BIGINT        NOT NULL,
            new_wap        NUMERIC(20,8),
            new_bar_count  INTEGER,
            revised_at     TIMESTAMP     NOT NULL DEFAULT NOW(),
            dag_id         VARCHAR(250),
            run_id         VARCHAR(250)
        )
        """
    )
    op.execute("CREATE INDEX bar_revisions_bar ON bar_revisions (symbol_id, timeframe, timestamp)")
    op.execute("CREATE INDEX bar_revisions_run ON bar_revisions (dag_id, run_id)")


def downgrade() -> None:
    op.execute("DROP TABLE bar_revisions")
    op.execute("DROP TABLE no_data_sessions")
    op.execute("ALTER TABLE symbols DROP COLUMN first_available_date")
