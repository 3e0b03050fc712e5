"""When IB confirmed a session: ``no_data_sessions.settled_at``, and ``short_sessions`` for halts.

A nullable column and a new table, so it runs online. See docs/schema.md#settled-sessions-0011.
Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE no_data_sessions ADD COLUMN settled_at TIMESTAMP")
    # Settled until now: IB answered empty on two different days.
    op.execute("UPDATE no_data_sessions SET settled_at = last_seen WHERE last_seen::date > first_seen::date")
    op.execute(
        """
        CREATE TABLE short_sessions (
            symbol_id  INTEGER      NOT NULL REFERENCES symbols(id),
            timeframe  VARCHAR(20)  NOT NULL,
            session    DATE         NOT NULL,
            bars       INTEGER      NOT NULL CHECK (bars > 0),
            scheduled  INTEGER      NOT NULL CHECK (scheduled > bars),
            answers    INTEGER      NOT NULL DEFAULT 1,
            agrees_with_daily BOOLEAN NOT NULL,
            first_seen TIMESTAMP    NOT NULL DEFAULT NOW(),
            last_seen  TIMESTAMP    NOT NULL DEFAULT NOW(),
            settled_at TIMESTAMP,
            dag_id     VARCHAR(250),
            run_id     VARCHAR(250),
            PRIMARY KEY (symbol_id, timeframe, session)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE short_sessions")
    op.execute("ALTER TABLE no_data_sessions DROP COLUMN settled_at")
