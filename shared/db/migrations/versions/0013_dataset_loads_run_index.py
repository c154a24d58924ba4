"""index: the load records of one run

Every run's OpenLineage COMPLETE/FAIL event lists the loads the run made; without the index
that read scans every load record the platform ever wrote, so it grows with history.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-02 15:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dataset_loads_run_id", "dataset_loads", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_dataset_loads_run_id", table_name="dataset_loads")
