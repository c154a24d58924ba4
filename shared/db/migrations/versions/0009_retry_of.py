"""a run retried from a failed one points at it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing. SET NULL: a retention job may drop the
    # old run before its retry.
    op.add_column(
        "workflow_runs", sa.Column("retry_of", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.create_foreign_key(
        "fk_workflow_runs_retry_of",
        "workflow_runs",
        "workflow_runs",
        ["retry_of"],
        ["id"],
        ondelete="SET NULL",
    )
    # "the retries of this run" for the run page; few runs are retries, so a partial index.
    op.create_index(
        "ix_workflow_runs_retry_of",
        "workflow_runs",
        ["retry_of"],
        postgresql_where=sa.text("retry_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_retry_of", table_name="workflow_runs")
    op.drop_constraint("fk_workflow_runs_retry_of", "workflow_runs", type_="foreignkey")
    op.drop_column("workflow_runs", "retry_of")
