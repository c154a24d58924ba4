"""GET /agents/health: the monitor's latest view of every agent."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from services.orchestrator_controller.deps import SessionDep, SettingsDep
from shared.agent_registry import registered_agents
from shared.db.models import AgentHealth
from shared.errors import NotFound, errors

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


@router.get("/agents/health", response_model=AgentHealthList, responses=errors(503))
async def agents_health(session: SessionDep, settings: SettingsDep) -> AgentHealthList:
    """Every agent, built in or registered, with its last observed status ("unknown" before
    the first check)."""
    rows = {r.agent: r for r in (await session.execute(select(AgentHealth))).scalars()}
    registered = await registered_agents(session)
    urls = {**{n: a.base_url for n, a in registered.items()}, **settings.agent_urls}
    agents = []
    for name, url in sorted(urls.items()):
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


class HealthChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent: str
    status: str
    previous: str | None
    latency_ms: float | None
    time: str | None
    sequence: int | None


class HealthHistory(BaseModel):
    items: list[HealthChange]


@router.get("/agents/health/history", response_model=HealthHistory, responses=errors(404, 422, 503))
async def agents_health_history(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    agent: Annotated[str | None, Query(max_length=64, description="one agent's changes")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HealthHistory:
    """The agents' status changes, newest first, from the `ingestion.agent.health` stream
    (Redis keeps its last 100,000 entries); 404 for an agent neither built in nor registered."""
    if (
        agent is not None
        and agent not in settings.agent_urls
        and agent not in await registered_agents(session)
    ):
        raise NotFound(f"no agent {agent!r}")
    stream = f"{settings.stream_prefix}ingestion.agent.health"
    items: list[HealthChange] = []
    last = "+"
    # Read back in pages until `limit` changes of the agent asked for are found.
    while len(items) < limit:
        page = await request.app.state.redis.xrevrange(stream, max=last, count=500)
        for entry_id, fields in page:
            event = json.loads(fields[b"event"])
            if agent is None or event.get("agent") == agent:
                items.append(HealthChange.model_validate(event))
            last = f"({entry_id.decode() if isinstance(entry_id, bytes) else entry_id}"
        if len(page) < 500:
            break
    return HealthHistory(items=items[:limit])
