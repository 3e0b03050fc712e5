"""Corporate actions, adjustment factors and each symbol's identity and membership over time.

New tables and nullable columns only, so it runs online. See docs/schema.md#corporate-actions.
Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The kinds a row of ``corporate_actions`` may have; configuration naming another is refused.
KINDS = ("split", "dividend", "delisting", "con_id_change", "ticker_change")


def upgrade() -> None:
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    op.execute(
        f"""
        CREATE TABLE corporate_actions (
            id                BIGSERIAL    PRIMARY KEY,
            symbol_id         INTEGER      NOT NULL REFERENCES symbols(id),
            kind              VARCHAR(20)  NOT NULL CHECK (kind IN ({kinds})),
            effective_session DATE         NOT NULL,
            ratio             NUMERIC(20,10),
            amount            NUMERIC(20,8),
            detected_by       VARCHAR(40)  NOT NULL,
            detected_at       TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
            details           JSONB        NOT NULL DEFAULT '{{}}'::jsonb,
            CONSTRAINT corporate_actions_natural_key UNIQUE (symbol_id, kind, effective_session)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE adjustment_factors (
            symbol_id  INTEGER        NOT NULL REFERENCES symbols(id),
            session    DATE           NOT NULL,
            factor     NUMERIC(24,12) NOT NULL CHECK (factor > 0),
            source     VARCHAR(20)    NOT NULL,
            fetched_at TIMESTAMPTZ    NOT NULL DEFAULT NOW(),
            PRIMARY KEY (symbol_id, session)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE symbol_identities (
            symbol_id   INTEGER     NOT NULL REFERENCES symbols(id),
            con_id      BIGINT      NOT NULL,
            valid_from  DATE,
            valid_to    DATE,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            PRIMARY KEY (symbol_id, con_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE universe_memberships (
            symbol_id   INTEGER     NOT NULL REFERENCES symbols(id),
            source_list VARCHAR(32) NOT NULL,
            valid_from  DATE,
            valid_to    DATE,
            CONSTRAINT universe_memberships_period CHECK (valid_to IS NULL OR valid_from IS NULL
                                                          OR valid_from <= valid_to),
            PRIMARY KEY (symbol_id, source_list)
        )
        """
    )
    op.execute("ALTER TABLE symbols ADD COLUMN last_session DATE")
    op.execute("ALTER TABLE symbols ADD COLUMN inactive_since TIMESTAMPTZ")


def downgrade() -> None:
    op.execute("ALTER TABLE symbols DROP COLUMN inactive_since")
    op.execute("ALTER TABLE symbols DROP COLUMN last_session")
    op.execute("DROP TABLE universe_memberships")
    op.execute("DROP TABLE symbol_identities")
    op.execute("DROP TABLE adjustment_factors")
    op.execute("DROP TABLE corporate_actions")
