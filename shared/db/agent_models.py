"""SQLAlchemy model of registered agents: services of other teams the engine calls like its own."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base


class RegisteredAgent(Base):
    """An agent outside the built-in ones, registered by an admin (`POST /agents`) or by an
    Agent resource. `actions` is what the agent itself answered at `GET /api/v1/actions` when
    it was registered: the spec validator accepts steps naming one of them."""

    __tablename__ = "registered_agents"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    base_url: Mapped[str] = mapped_column(Text)
    actions: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # The longest one call may take, whatever a step asks for (the agent's owner knows best).
    timeout_s: Mapped[float] = mapped_column(Float)
    # Calls in flight at once from one engine replica.
    max_concurrency: Mapped[int] = mapped_column(Integer)
    # Names of the credentials (environment variables) a step may ask this agent to use.
    credentials: Mapped[list[str]] = mapped_column(ARRAY(Text))
    source: Mapped[str] = mapped_column(Text)  # "api" or "kubernetes"
    resource: Mapped[str | None] = mapped_column(Text)  # <namespace>/<name> of its Agent resource
    updated_by: Mapped[str | None] = mapped_column(Text)  # an API key id, or the resource
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
