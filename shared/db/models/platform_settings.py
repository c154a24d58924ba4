"""Settings in force for the whole platform, written by the controller from a Config resource
and followed by every engine and agent (shared/live_log.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base


class PlatformSetting(Base):
    """One live setting a Config resource set; no row: each service keeps its own."""

    __tablename__ = "platform_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB, nullable=False)  # the value as JSON: "debug"
    source: Mapped[str] = mapped_column(Text)  # "resource <name>"
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
