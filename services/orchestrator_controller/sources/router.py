"""GET and DELETE /sources/{key}/state: inspect and reset a source's committed cursor."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from services.orchestrator_controller.deps import AdminKey, ReadKey, SessionDep
from services.orchestrator_controller.sources import service
from services.orchestrator_controller.sources.schemas import SourceStateOut, StateKeyPath
from shared.errors import errors

router = APIRouter(prefix="/sources", tags=["sources"], responses=errors(401, 403, 404, 422, 503))
log = logging.getLogger(__name__)


# `:path`: a key may hold '/' (e.g. "crm/orders"); the pattern still bounds what it may be.
@router.get("/{key:path}/state", dependencies=[ReadKey], response_model=SourceStateOut)
async def get_state(key: StateKeyPath, session: SessionDep) -> SourceStateOut:
    """The committed cursor of a source and the run that wrote it (404 before any commit)."""
    return service.describe(await service.find(session, key=key))


@router.delete("/{key:path}/state", dependencies=[AdminKey], status_code=204)
async def reset_state(key: StateKeyPath, request: Request, session: SessionDep) -> Response:
    """Forget the cursor: the source's next run collects everything again (404 if none)."""
    async with session.begin():
        removed = await service.reset(session, key=key)
    log.info(
        "source state %r reset by %s (was run %s)",
        key,
        getattr(request.state, "api_key_id", "?"),
        removed.run_id,
    )
    return Response(status_code=204)
