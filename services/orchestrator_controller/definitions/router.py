"""POST/GET /workflows/definitions."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.orchestrator_controller.definitions import service
from services.orchestrator_controller.definitions.schemas import DefinitionList, DefinitionOut
from services.orchestrator_controller.deps import AdminKey, ReadKey, SessionDep, SettingsDep
from services.orchestrator_controller.runs.service import check_nesting
from shared.spec.models import WorkflowSpec

router = APIRouter(prefix="/workflows/definitions", tags=["definitions"])


@router.post("", dependencies=[AdminKey], status_code=201, response_model=DefinitionOut)
async def register_definition(
    spec: WorkflowSpec, session: SessionDep, settings: SettingsDep
) -> JSONResponse:
    """Register a workflow spec (201 new, 200 when the same content is already stored)."""
    check_nesting(spec, {}, limit=settings.max_nesting_depth)
    async with session.begin():
        definition, is_new = await service.register(session, spec=spec)
    body = DefinitionOut.model_validate(definition, from_attributes=True)
    return JSONResponse(body.model_dump(mode="json"), status_code=201 if is_new else 200)


@router.get("", dependencies=[ReadKey], response_model=DefinitionList)
async def list_definitions(session: SessionDep, name: str | None = None) -> DefinitionList:
    """Registered workflows, every version."""
    rows = await service.list_definitions(session, name=name)
    return DefinitionList(
        items=[DefinitionOut.model_validate(r, from_attributes=True) for r in rows]
    )
