"""Data quality: ``data_quality_issues``, one row per finding of the checks a run's summary makes.

See docs/schema.md.
Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE data_quality_issues (
            id           BIGSERIAL    PRIMARY KEY,
            symbol_id    INTEGER      NOT NULL REFERENCES symbols(id),
            timeframe    VARCHAR(20)  NOT NULL,
            timestamp    TIMESTAMP    NOT NULL,
            check_name   VARCHAR(32)  NOT NULL,
            severity     VARCHAR(16)  NOT NULL,
            detail       TEXT         NOT NULL,
            dag_id       VARCHAR(250) NOT NULL,
            run_id       VARCHAR(250) NOT NULL,
            last_run_id  VARCHAR(250) NOT NULL,
            first_seen   TIMESTAMP    NOT NULL DEFAULT NOW(),
            last_seen    TIMESTAMP    NOT NULL DEFAULT NOW(),
            resolved_at  TIMESTAMP,
            CONSTRAINT data_quality_issues_key UNIQUE (symbol_id, timeframe, timestamp, check_name)
        )
        """
    )
    op.execute(
        "CREATE INDEX data_quality_issues_open ON data_quality_issues (timestamp) WHERE resolved_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE data_quality_issues")
