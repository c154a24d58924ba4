"""step_runs.needs: the earlier steps' outputs a step reads, so a claim reads only those; room
on each page for HOT updates, and lease renewals that touch no indexed column

A claim used to aggregate the outputs of every finished step of the claimed step's run, for
every step claimed, though most steps reference none. `needs` is filled when the rows are
created (shared/state/needs.py); NULL, as on the rows created before this migration, means
"read them all", so runs already in flight keep what they had.

HOT: an update writes no index entry (and the old version is pruned from its page without a
VACUUM) only if no indexed column changes, predicates of partial indexes included, and the new
version fits on the same page. Every status change touches the partial indexes on `status`, so
those updates cannot be HOT; a lease renewal can, once `lease_expires_at` is no index key (the
running steps are few: the expiry scan reads them all and sorts) and the page has room
(fillfactor 80 on new pages; existing pages keep theirs until rewritten).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RUNNING = sa.text("status = 'RUNNING'")


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing, and old rows read every output.
    op.add_column(
        "step_runs", sa.Column("needs", postgresql.ARRAY(sa.String(length=64)), nullable=True)
    )
    op.execute("ALTER TABLE step_runs SET (fillfactor = 80)")
    op.execute("ALTER TABLE workflow_runs SET (fillfactor = 80)")
    op.create_index("ix_step_runs_running", "step_runs", ["id"], postgresql_where=_RUNNING)
    op.drop_index("ix_step_runs_leased", table_name="step_runs")


def downgrade() -> None:
    op.create_index(
        "ix_step_runs_leased", "step_runs", ["lease_expires_at"], postgresql_where=_RUNNING
    )
    op.drop_index("ix_step_runs_running", table_name="step_runs")
    op.execute("ALTER TABLE workflow_runs RESET (fillfactor)")
    op.execute("ALTER TABLE step_runs RESET (fillfactor)")
    op.drop_column("step_runs", "needs")
