"""step_runs.affinity: the engine replica a step should preferably run on

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 11:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('step_runs', sa.Column('affinity', sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column('step_runs', 'affinity')
