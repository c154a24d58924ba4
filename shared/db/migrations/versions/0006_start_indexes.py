"""partial indexes: startable and held-back runs in start order, ready steps by affinity

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 15:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STARTABLE = sa.text("status = 'PENDING' AND admitted_at IS NOT NULL")
_HELD = sa.text("status = 'PENDING' AND admitted_at IS NULL")
_READY = sa.text("status = 'READY'")


def upgrade() -> None:
    op.create_index(
        'ix_workflow_runs_startable', 'workflow_runs',
        [sa.literal_column('priority DESC'), 'created_at'], postgresql_where=_STARTABLE,
    )
    op.create_index(
        'ix_workflow_runs_held', 'workflow_runs',
        [sa.literal_column('priority DESC'), 'created_at', 'id'], postgresql_where=_HELD,
    )
    op.create_index('ix_step_runs_ready_affinity', 'step_runs', ['affinity'], postgresql_where=_READY)


def downgrade() -> None:
    op.drop_index('ix_step_runs_ready_affinity', table_name='step_runs')
    op.drop_index('ix_workflow_runs_held', table_name='workflow_runs')
    op.drop_index('ix_workflow_runs_startable', table_name='workflow_runs')
