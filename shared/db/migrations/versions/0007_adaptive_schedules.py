"""adaptive schedules: an upper bound on the interval and the scheduler agent's last decision

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("max_interval_s", sa.Float(), nullable=True))
    op.add_column(
        "schedules",
        sa.Column("adaptive_decision", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("schedules", "adaptive_decision")
    op.drop_column("schedules", "max_interval_s")
