"""SQLAlchemy model of per-source collection state (cursors committed after the data landed)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Json

# The names a workflow may keep a source's state under (the collector and the controller's
# /sources/{key}/state both check it).
STATE_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@\-]{0,199}$"


class SourceState(Base):
    """The committed cursor of one source, keyed by a name the workflow chooses.

    A workflow writes it as its last step, after the merge, so a run that fails earlier leaves
    the previous cursor in place and the next run collects the same window again.
    """

    __tablename__ = "source_state"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Json]
    run_id: Mapped[str | None] = mapped_column(Text)  # the run that committed this value
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
