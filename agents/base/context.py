"""What a handler gets besides its body: settings, clients and the caller's ids."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.base.settings import AgentSettings


@dataclass
class ActionContext:
    agent: str
    settings: AgentSettings
    http: httpx.AsyncClient
    db_engine: AsyncEngine
    sessionmaker: async_sessionmaker
    idempotency_key: str | None
    run_id: str | None
    step_id: str | None
    trace_id: str | None
