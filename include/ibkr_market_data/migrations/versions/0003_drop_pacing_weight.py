"""Drop ``ib_pacing_ledger.weight``: nothing read or wrote it; the pacer counts one request per row.

See docs/schema.md.
Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ib_pacing_ledger DROP COLUMN weight")


def downgrade() -> None:
    op.execute("ALTER TABLE ib_pacing_ledger ADD COLUMN weight SMALLINT NOT NULL DEFAULT 1")
