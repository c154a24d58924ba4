"""GET /agents/health: the monitor's latest view of every agent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from services.orchestrator_controller.deps import SessionDep, SettingsDep
from shared.db.models import AgentHealth

router = APIRouter(tags=["agents"])


class AgentHealthOut(BaseModel):
    agent: str
    url: str
    status: str
    latency_ms: float | None
    checked_at: datetime | None
    changed_at: datetime | None
    detail: dict[str, Any] | None


class AgentHealthList(BaseModel):
    status: str
    agents: list[AgentHealthOut]


@router.get("/agents/health", response_model=AgentHealthList)
async def agents_health(session: SessionDep, settings: SettingsDep) -> AgentHealthList:
    """Every configured agent with its last observed status ("unknown" before the first check)."""
    rows = {r.agent: r for r in (await session.execute(select(AgentHealth))).scalars()}
    agents = []
    for name, url in sorted(settings.agent_urls.items()):
        row = rows.get(name)
        agents.append(
            AgentHealthOut(
                agent=name,
                url=url,
                status=row.status if row else "unknown",
                latency_ms=row.latency_ms if row else None,
                checked_at=row.checked_at if row else None,
                changed_at=row.changed_at if row else None,
                detail=row.detail if row else None,
            )
        )
    statuses = {a.status for a in agents}
    overall = (
        "healthy"
        if statuses == {"healthy"}
        else ("unknown" if statuses == {"unknown"} else "degraded")
    )
    return AgentHealthList(status=overall, agents=agents)
