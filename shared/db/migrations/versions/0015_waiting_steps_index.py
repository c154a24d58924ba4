"""partial index: the waiting (unclaimed, open) action steps of each run

Stopping a run (cancel, deadline) cancels these in bounded batches; without the index each
batch rescans the run's finished steps, so a 100,000-item fan-out cost O(n²) to stop.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING = sa.text("role = 'action' AND status IN ('PENDING', 'READY', 'RETRY_WAIT')")


def upgrade() -> None:
    op.create_index("ix_step_runs_waiting", "step_runs", ["run_id"], postgresql_where=_WAITING)


def downgrade() -> None:
    op.drop_index("ix_step_runs_waiting", table_name="step_runs")
