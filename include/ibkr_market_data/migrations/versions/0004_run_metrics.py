"""Operations: each attempt's request latency, each run's metrics, freshness alerts, dashboard indexes.

See docs/schema.md.
Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE collection_logs ADD COLUMN request_seconds DOUBLE PRECISION")
    op.execute(
        """
        CREATE TABLE run_metrics (
            dag_id           VARCHAR(250)     NOT NULL,
            run_id           VARCHAR(250)     NOT NULL,
            exchange         VARCHAR(16)      NOT NULL,
            symbols          INTEGER          NOT NULL,
            attempts         INTEGER          NOT NULL,
            requests         INTEGER          NOT NULL,
            bars             BIGINT           NOT NULL,
            retries          INTEGER          NOT NULL,
            completed        INTEGER          NOT NULL,
            failed           INTEGER          NOT NULL,
            no_data          INTEGER          NOT NULL,
            skipped          INTEGER          NOT NULL,
            latency_p50      DOUBLE PRECISION,
            latency_p95      DOUBLE PRECISION,
            started_at       TIMESTAMP,
            finished_at      TIMESTAMP,
            wall_seconds     DOUBLE PRECISION,
            recorded_at      TIMESTAMP        NOT NULL DEFAULT NOW(),
            PRIMARY KEY (dag_id, run_id, exchange)
        )
        """
    )
    op.execute("CREATE INDEX run_metrics_started_at ON run_metrics (started_at)")
    op.execute(
        """
        CREATE TABLE freshness_alerts (
            exchange      VARCHAR(16) NOT NULL,
            trading_date  DATE        NOT NULL,
            expected      INTEGER     NOT NULL,
            missing       INTEGER     NOT NULL,
            alerted_at    TIMESTAMP   NOT NULL DEFAULT NOW(),
            recovered_at  TIMESTAMP,
            PRIMARY KEY (exchange, trading_date)
        )
        """
    )
    # The coverage view counts bars per session date over a range: without this, each page scans
    # the whole of market_data (its unique key leads with symbol_id).
    op.execute(
        "CREATE INDEX market_data_timeframe_timestamp ON market_data (timeframe, timestamp, symbol_id)"
    )
    # Failed and no-data attempts of a range (coverage, failures): a small part of the table.
    op.execute(
        "CREATE INDEX collection_logs_problems ON collection_logs (end_date) WHERE status IN ('failed', 'no_data')"  # noqa: E501
    )
    op.execute("CREATE INDEX collection_logs_run ON collection_logs (dag_id, run_id)")


def downgrade() -> None:
    op.execute("DROP INDEX collection_logs_run")
    op.execute("DROP INDEX collection_logs_problems")
    op.execute("DROP INDEX market_data_timeframe_timestamp")
    op.execute("DROP TABLE freshness_alerts")
    op.execute("DROP TABLE run_metrics")
    op.execute("ALTER TABLE collection_logs DROP COLUMN request_seconds")
