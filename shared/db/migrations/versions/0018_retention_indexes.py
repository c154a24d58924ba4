"""indexes for retention and for a run's events: finished runs oldest first, a run's events,
the Idempotency-Keys naming a run

The retention purge (shared/state/retention.py) takes the oldest finished runs and deletes
their events and keys with them; without these each batch would scan the three tables whole.
A run's events (`GET /workflows/{id}/events`, the run page's feed) were read by walking the
whole outbox in id order; they are now found by the run.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_workflow_runs_finished",
        "workflow_runs",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_index("ix_event_outbox_run", "event_outbox", ["run_id", "id"])
    op.create_index("ix_idempotency_records_resource", "idempotency_records", ["resource_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_records_resource", table_name="idempotency_records")
    op.drop_index("ix_event_outbox_run", table_name="event_outbox")
    op.drop_index("ix_workflow_runs_finished", table_name="workflow_runs")
