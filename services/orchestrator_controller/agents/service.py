"""Reading and writing registered agents (`registered_agents`). Functions only `flush()`: the
caller owns the transaction. The engine picks a change up at its next directory refresh."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.agents.schemas import AgentIn, AgentOut
from shared.agent_registry import builtin
from shared.db.models import AgentHealth, RegisteredAgent
from shared.errors import Conflict, NotFound
from shared.spec.catalog import AGENT_ACTIONS

# Non-archived definitions with a step naming the agent (jsonb containment uses the GIN-less
# sequential scan; definitions are few).
_DEFINITIONS_USING = text(
    "SELECT name, version FROM workflow_definitions "
    "WHERE archived_at IS NULL AND spec->'steps' @> CAST(:probe AS jsonb) "
    "ORDER BY name, version"
)
_SCHEDULES_OF = text(
    "SELECT name FROM schedules WHERE enabled AND workflow_name = ANY(:workflows) ORDER BY name"
)


def refuse_builtin(name: str) -> None:
    """409 for a name the platform keeps for itself."""
    if builtin(name):
        raise Conflict(
            f"{name!r} is a built-in agent (or a reserved name): its address comes from "
            "AGENT_URLS and its actions from the platform; register another name",
            code="builtin_agent",
            details={"agent": name},
        )


def refuse_resource_owned(row: RegisteredAgent | None, *, source: str) -> None:
    """409 when the API would change an agent an Agent resource registered: the resource would
    put its own registration back at its next reconcile, so change it there."""
    if row is not None and row.source == "kubernetes" and source != "kubernetes":
        raise Conflict(
            f"{row.name} is registered by the Agent resource {row.resource}: change the resource",
            code="registered_by_resource",
            details={"agent": row.name, "resource": row.resource},
        )


def describe(row: RegisteredAgent, health: str = "unknown") -> AgentOut:
    return AgentOut(
        name=row.name,
        source=row.source,  # written only as "api" or "kubernetes"
        base_url=row.base_url,
        actions=sorted(row.actions),
        timeout_s=row.timeout_s,
        max_concurrency=row.max_concurrency,
        credentials=list(row.credentials),
        resource=row.resource,
        updated_by=row.updated_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        health=health,
    )


def _describe_builtin(name: str, agent_urls: Mapping[str, str], health: str) -> AgentOut:
    return AgentOut(
        name=name,
        source="builtin",
        base_url=agent_urls.get(name),
        actions=sorted(AGENT_ACTIONS.get(name, ())),
        health=health,
    )


async def _health(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(select(AgentHealth.agent, AgentHealth.status))
    return {agent: status for agent, status in rows}  # noqa: C416 (rows are Row objects)


async def list_agents(session: AsyncSession, agent_urls: Mapping[str, str]) -> list[AgentOut]:
    """The built-in agents, then the registered ones, each by name."""
    health = await _health(session)
    builtins = [
        _describe_builtin(name, agent_urls, health.get(name, "unknown"))
        for name in sorted(set(AGENT_ACTIONS) | set(agent_urls))
    ]
    rows = (await session.scalars(select(RegisteredAgent).order_by(RegisteredAgent.name))).all()
    return builtins + [describe(row, health.get(row.name, "unknown")) for row in rows]


async def find(session: AsyncSession, agent_urls: Mapping[str, str], name: str) -> AgentOut:
    """One agent, built in or registered; 404 otherwise."""
    health = (await _health(session)).get(name, "unknown")
    if name in AGENT_ACTIONS or name in agent_urls:
        return _describe_builtin(name, agent_urls, health)
    row = await session.get(RegisteredAgent, name)
    if row is None:
        raise NotFound(f"no agent {name!r} (GET /agents lists them)", code="unknown_agent")
    return describe(row, health)


async def store(
    session: AsyncSession,
    body: AgentIn,
    *,
    base_url: str,
    actions: list[str],
    source: str,
    resource: str | None = None,
    by: str | None = None,
) -> tuple[RegisteredAgent, bool]:
    """Register `body.name` with the actions read from it, or update it; return the row and
    whether it is new. 409 for a built-in name, and for the API changing a resource's agent."""
    refuse_builtin(body.name)
    row = await session.get(RegisteredAgent, body.name, with_for_update=True)
    refuse_resource_owned(row, source=source)
    created = row is None
    if row is None:
        row = RegisteredAgent(name=body.name)
        session.add(row)
    row.base_url, row.actions = base_url, actions
    row.timeout_s, row.max_concurrency = body.timeout_s, body.max_concurrency
    row.credentials = list(body.credentials)
    row.source, row.resource, row.updated_by = source, resource, by
    if not created:
        row.updated_at = func.now()  # evaluated by the database at flush
    await session.flush()
    await session.refresh(row)
    return row, created


async def users(session: AsyncSession, name: str) -> tuple[list[str], list[str]]:
    """The non-archived definitions (`name vN`) with a step naming the agent, and the enabled
    schedules of those workflows."""
    probe = json.dumps([{"agent": name}])
    found = (await session.execute(_DEFINITIONS_USING, {"probe": probe})).all()
    definitions = [f"{row.name} v{row.version}" for row in found]
    workflows = sorted({row.name for row in found})
    schedules = (
        list((await session.execute(_SCHEDULES_OF, {"workflows": workflows})).scalars())
        if workflows
        else []
    )
    return definitions, schedules


async def refuse_in_use(session: AsyncSession, name: str) -> None:
    """409 naming them while definitions or enabled schedules still use the agent."""
    definitions, schedules = await users(session, name)
    if not definitions:
        return
    shown = f"definitions {', '.join(definitions)}"
    if schedules:
        shown += f" and enabled schedules {', '.join(schedules)}"
    raise Conflict(
        f"agent {name!r} is used by {shown}; archive them (and disable the schedules) first",
        code="agent_in_use",
        details={"agent": name, "definitions": definitions, "schedules": schedules},
    )


async def unregister(session: AsyncSession, name: str, *, source: str = "api") -> None:
    """Remove a registered agent: 404 unknown, 409 built-in, owned by a resource, or in use."""
    refuse_builtin(name)
    row = await session.get(RegisteredAgent, name, with_for_update=True)
    if row is None:
        raise NotFound(f"no registered agent {name!r}", code="unknown_agent")
    refuse_resource_owned(row, source=source)
    await refuse_in_use(session, name)
    await session.delete(row)
    # Its last health would otherwise outlive it in the agent_health table.
    await session.execute(delete(AgentHealth).where(AgentHealth.agent == name))
    await session.flush()
