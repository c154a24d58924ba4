"""What a handler gets besides its body: settings, clients and the caller's ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.base.settings import AgentSettings
from ml.slot import ModelSlot


@dataclass
class ActionContext:
    agent: str
    settings: AgentSettings
    http: httpx.AsyncClient
    db_engine: AsyncEngine
    # Where PostgreSQL merge targets live: the platform database unless configured apart.
    target_engine: AsyncEngine
    sessionmaker: async_sessionmaker
    idempotency_key: str | None
    run_id: str | None
    step_id: str | None
    trace_id: str | None
    models: dict[str, ModelSlot] = field(default_factory=dict)  # by registered model name
