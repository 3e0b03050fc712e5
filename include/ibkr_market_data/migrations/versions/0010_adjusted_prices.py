"""Adjusted prices: what each factor was derived from, each symbol's latest fetch, a function, a view.

New nullable columns, a table, a function and a view only: it runs online. See docs/corporate-actions.md.
Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Each bar takes its session's factor: a daily bar's date, an intraday bar's date in the exchange's
# zone. After the latest fetched session the factor is 1 (backward adjustment leaves the newest
# sessions as traded); where no factor is known the adjusted values are NULL.
ADJUSTED_MARKET_DATA = """
CREATE FUNCTION adjusted_market_data(adjust_for TEXT[] DEFAULT ARRAY['split', 'dividend'])
RETURNS TABLE (
    symbol_id INTEGER, timeframe VARCHAR(20), "timestamp" TIMESTAMP, session DATE,
    open NUMERIC(20,8), high NUMERIC(20,8), low NUMERIC(20,8), close NUMERIC(20,8),
    volume BIGINT, wap NUMERIC(20,8), bar_count INTEGER,
    price_factor NUMERIC, volume_factor NUMERIC
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT md.symbol_id, md.timeframe, md.timestamp, bar.session,
           round(md.open * f.price, 8), round(md.high * f.price, 8),
           round(md.low * f.price, 8), round(md.close * f.price, 8),
           round(md.volume * f.volume)::bigint, round(md.wap * f.price, 8), md.bar_count,
           f.price, f.volume
    FROM market_data md
    LEFT JOIN adjustment_fetches fe ON fe.symbol_id = md.symbol_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN md.timeframe = '1day' THEN md.timestamp::date
                    ELSE (md.timestamp AT TIME ZONE 'UTC' AT TIME ZONE fe.time_zone)::date END AS session
    ) bar
    LEFT JOIN adjustment_factors af ON af.symbol_id = md.symbol_id AND af.session = bar.session
    CROSS JOIN LATERAL (
        SELECT CASE WHEN af.factor IS NOT NULL THEN af.factor
                    WHEN bar.session > fe.last_session THEN 1 END AS total,
               CASE WHEN af.factor IS NOT NULL THEN coalesce(af.volume_factor, 1)
                    WHEN bar.session > fe.last_session THEN 1 END AS split_volume
    ) known
    CROSS JOIN LATERAL (
        SELECT CASE WHEN 'dividend' = ANY(adjust_for) AND 'split' = ANY(adjust_for) THEN known.total
                    WHEN 'split' = ANY(adjust_for) THEN 1 / known.split_volume
                    WHEN 'dividend' = ANY(adjust_for) THEN known.total * known.split_volume
                    ELSE 1 END AS price,
               CASE WHEN 'split' = ANY(adjust_for) THEN known.split_volume ELSE 1 END AS volume
    ) f
$$
"""


def upgrade() -> None:
    # The factor, and what it was derived from: IB's adjusted close and volume against the stored bar.
    op.execute(
        "ALTER TABLE adjustment_factors ADD COLUMN volume_factor NUMERIC(24,12),"
        " ADD COLUMN raw_close NUMERIC(20,8), ADD COLUMN adjusted_close NUMERIC(20,8)"
    )
    op.execute(
        """
        CREATE TABLE adjustment_fetches (
            symbol_id     INTEGER      PRIMARY KEY REFERENCES symbols(id),
            fetched_at    TIMESTAMPTZ  NOT NULL,
            requested_from DATE        NOT NULL,
            first_session DATE         NOT NULL,
            last_session  DATE         NOT NULL,
            time_zone     VARCHAR(64)  NOT NULL,
            sessions      INTEGER      NOT NULL,
            dividends     INTEGER      NOT NULL,
            dag_id        VARCHAR(250),
            run_id        VARCHAR(250)
        )
        """
    )
    op.execute(ADJUSTED_MARKET_DATA)
    op.execute("CREATE VIEW market_data_adjusted AS SELECT * FROM adjusted_market_data()")


def downgrade() -> None:
    op.execute("DROP VIEW market_data_adjusted")
    op.execute("DROP FUNCTION adjusted_market_data(TEXT[])")
    op.execute("DROP TABLE adjustment_fetches")
    op.execute(
        "ALTER TABLE adjustment_factors DROP COLUMN adjusted_close, DROP COLUMN raw_close,"
        " DROP COLUMN volume_factor"
    )
