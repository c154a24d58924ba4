"""GET /orchestrators: the five managers, their configuration and live counts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.orchestrator_controller.deps import ReadKey, SessionDep
from services.orchestrator_controller.policies.schemas import OrchestratorList, OrchestratorOut
from services.orchestrator_controller.policies.service import MANAGERS, Policies
from shared.errors import errors

router = APIRouter(tags=["orchestrators"], responses=errors(401, 403, 503))

DESCRIPTIONS = {
    "api_manager": "per source host: concurrency cap, rate limit, pause on 429 or open circuit",
    "batch_manager": "every run: overall and per-workflow caps, priority order, the queue",
    "file_manager": "bulk files: run cap, map_over fan-out ceiling, chunk size input",
    "ingestion_manager": "the default policy: a run cap for its kinds and unclaimed kinds",
    "stream_manager": "continuous streams: run cap, backpressure when the queue grows",
}


@router.get("/orchestrators", dependencies=[ReadKey], response_model=OrchestratorList)
async def orchestrators(request: Request, session: SessionDep) -> OrchestratorList:
    """The five orchestrators with the configuration in force, where each of its fields
    comes from (an Orchestrator resource, CONTROLLER_ORCHESTRATORS or the defaults), and live
    counts."""
    policies: Policies = request.app.state.policies
    # one configuration throughout, even if a resource swaps it meanwhile
    config, sources = policies.config, policies.sources
    live = await policies.snapshot_of(session, config)
    kinds = config.kind_lists()
    items = []
    for name in MANAGERS:
        section = getattr(config, name)
        items.append(
            OrchestratorOut(
                name=name.replace("_", "-"),
                description=DESCRIPTIONS[name],
                # the batch manager is the queue in front of every kind
                workflow_kinds=kinds.get(name, ["*"]),
                paused=section.paused,
                config=section.model_dump(mode="json"),
                sources=sources[name],
                live=live[name],
            )
        )
    return OrchestratorList(items=items)
