"""Initial schema: symbols, market_data, collection_logs and the shared pacing ledger.

Keeps every column of the original system's tables, so its queries run unchanged. See docs/schema.md.
Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE symbols (
            id               SERIAL PRIMARY KEY,
            symbol           VARCHAR(32)  NOT NULL,
            exchange         VARCHAR(16)  NOT NULL,
            primary_exchange VARCHAR(16)  NOT NULL,
            currency         CHAR(3)      NOT NULL,
            sec_type         VARCHAR(8)   NOT NULL DEFAULT 'STK',
            con_id           BIGINT       UNIQUE,
            priority         SMALLINT     NOT NULL DEFAULT 2,
            active           BOOLEAN      NOT NULL DEFAULT FALSE,
            asset_class      VARCHAR(16)  NOT NULL DEFAULT 'equity',
            name             TEXT,
            source_list      VARCHAR(32),
            inactive_reason  TEXT,
            resolved_at      TIMESTAMPTZ,
            created_at       TIMESTAMP    NOT NULL DEFAULT NOW(),
            updated_at       TIMESTAMP    NOT NULL DEFAULT NOW(),
            CONSTRAINT symbols_natural_key UNIQUE (symbol, primary_exchange, currency)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE market_data (
            id          BIGSERIAL PRIMARY KEY,
            symbol_id   INTEGER       NOT NULL REFERENCES symbols(id),
            timestamp   TIMESTAMP     NOT NULL,
            timeframe   VARCHAR(20)   NOT NULL,
            open        NUMERIC(20,8) NOT NULL,
            high        NUMERIC(20,8) NOT NULL,
            low         NUMERIC(20,8) NOT NULL,
            close       NUMERIC(20,8) NOT NULL,
            volume      BIGINT        NOT NULL DEFAULT 0,
            wap         NUMERIC(20,8),
            bar_count   INTEGER       DEFAULT 0,
            created_at  TIMESTAMP     DEFAULT NOW(),
            updated_at  TIMESTAMP     DEFAULT NOW(),
            CONSTRAINT market_data_natural_key UNIQUE (symbol_id, timeframe, timestamp),
            CONSTRAINT market_data_valid_bar CHECK (
                low > 0 AND low <= high AND low <= open AND open <= high
                AND low <= close AND close <= high AND volume >= 0
            )
        )
        """
    )
    op.execute(
        """
        CREATE TABLE collection_logs (
            id                BIGSERIAL PRIMARY KEY,
            symbol_id         INTEGER     REFERENCES symbols(id),
            collection_type   VARCHAR(50) NOT NULL,
            timeframe         VARCHAR(20) NOT NULL,
            start_date        TIMESTAMP,
            end_date          TIMESTAMP,
            status            VARCHAR(20) DEFAULT 'pending',
            error_message     TEXT,
            records_collected INTEGER     DEFAULT 0,
            started_at        TIMESTAMP   DEFAULT NOW(),
            completed_at      TIMESTAMP,
            error_code        INTEGER,
            dag_id            VARCHAR(250),
            run_id            VARCHAR(250),
            try_number        INTEGER,
            requests_sent     INTEGER     NOT NULL DEFAULT 0,
            CONSTRAINT collection_logs_status CHECK (
                status IN ('pending', 'completed', 'failed', 'no_data', 'skipped')
            ),
            CONSTRAINT collection_logs_one_row_per_attempt
                UNIQUE NULLS NOT DISTINCT (dag_id, run_id, symbol_id, timeframe, start_date, try_number)
        )
        """
    )
    op.execute("CREATE INDEX collection_logs_started_at ON collection_logs (started_at)")
    op.execute("CREATE INDEX collection_logs_symbol_status ON collection_logs (symbol_id, status)")
    op.execute(
        """
        CREATE TABLE ib_pacing_ledger (
            id           BIGSERIAL   PRIMARY KEY,
            contract_key TEXT        NOT NULL,
            request_key  TEXT        NOT NULL,
            weight       SMALLINT    NOT NULL DEFAULT 1,
            sent_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute("CREATE INDEX ib_pacing_ledger_sent_at ON ib_pacing_ledger (sent_at)")


def downgrade() -> None:
    op.execute("DROP TABLE ib_pacing_ledger")
    op.execute("DROP TABLE collection_logs")
    op.execute("DROP TABLE market_data")
    op.execute("DROP TABLE symbols")
