"""Run plans: ``planned_groups``, the groups of a run's mapped tasks with their items.

A plan sent through XCom is read whole by every mapped task instance. See docs/schema.md.
Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE planned_groups (
            dag_id      VARCHAR(250) NOT NULL,
            run_id      VARCHAR(250) NOT NULL,
            group_index INTEGER      NOT NULL,
            label       TEXT         NOT NULL,
            items       JSONB        NOT NULL,
            planned_at  TIMESTAMP    NOT NULL DEFAULT NOW(),
            PRIMARY KEY (dag_id, run_id, group_index)
        )
        """
    )
    op.execute("CREATE INDEX planned_groups_planned_at ON planned_groups (planned_at)")


def downgrade() -> None:
    op.execute("DROP TABLE planned_groups")
