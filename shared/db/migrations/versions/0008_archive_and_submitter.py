"""archived workflow definitions; who submitted each run

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Both nullable, no default: existing rows stay as they are (active definitions; runs whose
    # submitter was never recorded), and adding them rewrites neither table.
    op.add_column(
        "workflow_definitions",
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("workflow_runs", sa.Column("submitted_by", sa.String(length=100), nullable=True))
    op.create_index(
        "ix_workflow_runs_submitter_created", "workflow_runs", ["submitted_by", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_submitter_created", table_name="workflow_runs")
    op.drop_column("workflow_runs", "submitted_by")
    op.drop_column("workflow_definitions", "archived_at")
