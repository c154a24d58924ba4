"""The transactional outbox: events written with the state change they report."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Index,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Json


class OutboxEvent(Base):
    """An event written in the same transaction as the state change it reports."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    stream: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    payload: Mapped[Json]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_event_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        # A run's events in order (its history, its feed, the retention purge).
        Index("ix_event_outbox_run", "run_id", "id"),
    )
