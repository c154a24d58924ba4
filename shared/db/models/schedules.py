"""SQLAlchemy models of schedules and their fires, plus the indexes the admission policies use."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Json


class Schedule(Base):
    """When to start runs of a workflow: a cron expression, an interval, or continuously."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    workflow_name: Mapped[str] = mapped_column(String(100))
    # None: the newest registered version at each fire
    workflow_version: Mapped[int | None] = mapped_column(Integer)
    inputs: Mapped[Json]
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    trigger: Mapped[str] = mapped_column(String(16))  # cron | interval | continuous | adaptive
    cron: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    interval_s: Mapped[float | None] = mapped_column(Float)
    anchor_at: Mapped[datetime | None]  # interval fires are anchor_at + k * interval_s
    min_interval_s: Mapped[float] = mapped_column(Float, server_default="0")
    # adaptive: the scheduler agent picks each interval within [min_interval_s, max_interval_s]
    max_interval_s: Mapped[float | None] = mapped_column(Float)
    # its last answer: {run_id, interval_s, reason, decided_at, model, version, source}
    adaptive_decision: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    backoff_initial_s: Mapped[float] = mapped_column(Float, server_default="10")
    backoff_max_s: Mapped[float] = mapped_column(Float, server_default="600")
    catchup: Mapped[str] = mapped_column(String(8), server_default="latest")
    max_catchup: Mapped[int] = mapped_column(Integer, server_default="1")
    overlap: Mapped[str] = mapped_column(String(12), server_default="skip")
    jitter_s: Mapped[float] = mapped_column(Float, server_default="0")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    # a seed schedule whose workflow is missing: enabled by the ticker once it validates
    auto_enable: Mapped[bool] = mapped_column(Boolean, server_default="false")
    status_reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), server_default="api")
    next_fire_at: Mapped[datetime | None]  # nominal time of the next fire
    next_due_at: Mapped[datetime | None]  # next_fire_at plus its jitter: when the ticker acts
    buffered_fire_at: Mapped[datetime | None]  # overlap=buffer_one: a fire waiting its turn
    last_fire_at: Mapped[datetime | None]
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    missed_fires: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_schedules_due", "next_due_at", postgresql_where=text("enabled")),)


class ScheduleFire(Base):
    """One tick of a schedule; the primary key is what makes a tick fire at most once."""

    __tablename__ = "schedule_fires"

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    fire_at: Mapped[datetime] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    outcome: Mapped[str] = mapped_column(String(16))  # started | skipped | buffered | failed
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
