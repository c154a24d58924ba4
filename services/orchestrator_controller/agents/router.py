"""POST /agents, GET /agents, GET|DELETE /agents/{name}: the agents steps may call, and the
registration of other teams' agents for installs without Agent resources."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.orchestrator_controller.agents import service
from services.orchestrator_controller.agents.probe import normalize_url, read_actions
from services.orchestrator_controller.agents.schemas import AgentIn, AgentOut, AgentPath
from services.orchestrator_controller.deps import AdminKey, ReadKey, SessionDep, SettingsDep
from shared.db.models import RegisteredAgent
from shared.errors import errors

router = APIRouter(prefix="/agents", tags=["agents"], responses=errors(401, 403, 503))
log = logging.getLogger(__name__)


@router.post(
    "",
    dependencies=[AdminKey],
    status_code=201,
    response_model=AgentOut,
    responses={
        200: {"model": AgentOut, "description": "an agent registered before, updated"},
        **errors(409, 422),
    },
)
async def register_agent(
    body: AgentIn, request: Request, session: SessionDep, settings: SettingsDep
) -> JSONResponse:
    """Register an agent (201), or update one registered through the API (200). The controller
    reads its actions from `GET {base_url}/api/v1/actions` first: 422 naming `base_url` when it
    cannot, or the URL is one the platform may not call; 409 for a built-in agent's name or an
    agent an Agent resource registered."""
    base_url = normalize_url(body.base_url)
    service.refuse_builtin(body.name)
    # Refused before the agent is called; checked again under the row's lock when stored.
    async with session.begin():
        service.refuse_resource_owned(await session.get(RegisteredAgent, body.name), source="api")
    actions = await read_actions(
        request.app.state.http,
        base_url,
        token=settings.service_token.get_secret_value(),
        allow_private_hosts=settings.agent_allow_private_hosts,
        timeout_s=settings.agent_probe_timeout_s,
    )
    async with session.begin():
        row, created = await service.store(
            session,
            body,
            base_url=base_url,
            actions=actions,
            source="api",
            by=getattr(request.state, "api_key_id", None),
        )
        out = service.describe(row)
    log.info("agent %s registered at %s with actions %s", body.name, base_url, actions)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", dependencies=[ReadKey], response_model=list[AgentOut])
async def list_agents(session: SessionDep, settings: SettingsDep) -> list[AgentOut]:
    """Every agent steps may name: the built-in ones, then the registered ones."""
    return await service.list_agents(session, settings.agent_urls)


@router.get("/{name}", dependencies=[ReadKey], response_model=AgentOut, responses=errors(404, 422))
async def get_agent(name: AgentPath, session: SessionDep, settings: SettingsDep) -> AgentOut:
    """One agent, where it comes from and what it offers."""
    return await service.find(session, settings.agent_urls, name)


@router.delete("/{name}", dependencies=[AdminKey], status_code=204, responses=errors(404, 409, 422))
async def unregister_agent(name: AgentPath, session: SessionDep) -> Response:
    """Remove a registered agent: 409 for a built-in one, one an Agent resource registered, or
    one that non-archived definitions (or enabled schedules) still use, naming them."""
    async with session.begin():
        await service.unregister(session, name)
    log.info("agent %s unregistered", name)
    return Response(status_code=204)
