"""Agents as the platform knows them: health checks, effects ledger, live instances, and the
registered agents of other teams the engine calls like its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Float,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Json


class AgentHealth(Base):
    __tablename__ = "agent_health"

    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[Json | None]
    checked_at: Mapped[datetime] = mapped_column(server_default=func.now())
    changed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AgentEffect(Base):
    """An agent's ledger of work done per idempotency key: the record of executed effects."""

    __tablename__ = "agent_effects"

    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # IN_PROGRESS | DONE | FAILED
    result: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[Json | None]
    executions: Mapped[int] = mapped_column(Integer, server_default="0")
    claimed_until: Mapped[datetime | None]
    # The agent process holding (or last holding) the claim: a claim whose process stopped
    # beating (agent_instances) is taken over without waiting for claimed_until.
    claimed_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]


class AgentInstance(Base):
    """A running agent process and its last heartbeat (agents/base/liveness.py)."""

    __tablename__ = "agent_instances"

    instance_id: Mapped[str] = mapped_column(Text, primary_key=True)
    agent: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(server_default=func.now())


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
