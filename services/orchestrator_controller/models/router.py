"""GET /models, GET|PUT|DELETE /models/{model}: which registered model and alias each of the
platform's models is served from (the API for installs without Model resources)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from services.orchestrator_controller.deps import AdminKey, ReadKey, SessionDep
from services.orchestrator_controller.models import service
from services.orchestrator_controller.models.schemas import (
    ModelBindingIn,
    ModelBindingOut,
    ModelPath,
)
from shared.errors import errors

router = APIRouter(prefix="/models", tags=["models"], responses=errors(401, 403, 503))
log = logging.getLogger(__name__)


@router.get("", dependencies=[ReadKey], response_model=list[ModelBindingOut])
async def list_models(session: SessionDep) -> list[ModelBindingOut]:
    """Every model with the registry entry its services load."""
    return await service.list_all(session)


@router.get(
    "/{model}", dependencies=[ReadKey], response_model=ModelBindingOut, responses=errors(404, 422)
)
async def get_model(model: ModelPath, session: SessionDep) -> ModelBindingOut:
    """Where one model is served from."""
    return await service.find(session, model)


@router.put(
    "/{model}",
    dependencies=[AdminKey],
    response_model=ModelBindingOut,
    responses=errors(404, 409, 422),
)
async def bind_model(
    model: ModelPath, body: ModelBindingIn, request: Request, session: SessionDep
) -> ModelBindingOut:
    """Serve the model from another registered model or alias; every service holding it
    switches at its next refresh (`*_MODEL_REFRESH_S`), keeping the old one until the new
    one loads."""
    async with session.begin():
        bound = await service.bind_by_api(
            session, model, body, by=getattr(request.state, "api_key_id", None)
        )
    log.info("model %s bound to %s@%s", model, bound.registered_model, bound.alias)
    return bound


@router.delete(
    "/{model}", dependencies=[AdminKey], status_code=204, responses=errors(404, 409, 422)
)
async def unbind_model(model: ModelPath, session: SessionDep) -> Response:
    """Serve the model from its own name at `champion` again."""
    async with session.begin():
        await service.unbind_by_api(session, model)
    return Response(status_code=204)
