"""POST/GET /workflows/definitions, DELETE (archive) and restore of a definition."""

from __future__ import annotations

import json
from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.orchestrator_controller.definitions import service
from services.orchestrator_controller.definitions.schemas import (
    SPEC_EXAMPLE,
    DefinitionList,
    DefinitionOut,
)
from services.orchestrator_controller.deps import AdminKey, ReadKey, SessionDep, SettingsDep
from services.orchestrator_controller.runs.service import check_nesting
from shared.errors import errors
from shared.spec.models import MAX_INT32, WorkflowSpec

router = APIRouter(
    prefix="/workflows/definitions", tags=["definitions"], responses=errors(401, 403, 503)
)

Version = Annotated[
    int | None,
    Query(ge=1, le=MAX_INT32, description="only this version; every version when omitted"),
]


YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml"}


async def spec_from_body(request: Request) -> WorkflowSpec:
    """The spec from a JSON body, or a YAML one (`Content-Type: application/yaml`), so the file
    a user keeps in git can be sent as it is; errors are 422s naming the field either way."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        data = yaml.safe_load(raw) if content_type in YAML_TYPES else json.loads(raw or b"null")
    except (yaml.YAMLError, ValueError) as exc:
        kind = "YAML" if content_type in YAML_TYPES else "JSON"
        raise RequestValidationError(
            [{"type": "parse_error", "loc": ("body",), "msg": f"not {kind}: {exc}"}]
        ) from exc
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {
                "schema": {"$ref": "#/components/schemas/WorkflowSpec"},
                "example": SPEC_EXAMPLE,
            }
            for media in ("application/json", "application/yaml")
        },
    }
}


@router.post(
    "",
    dependencies=[AdminKey],
    status_code=201,
    response_model=DefinitionOut,
    openapi_extra=_SPEC_BODY,
    responses={
        200: {"model": DefinitionOut, "description": "the same content was already stored"},
        **errors(409, 413, 422),
    },
)
async def register_definition(
    spec: Annotated[WorkflowSpec, Depends(spec_from_body)],
    session: SessionDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Register a workflow spec (201 new, 200 when the same content is already stored).

    409 when the version exists with other content or is archived; 413 past
    CONTROLLER_MAX_SPEC_BYTES.
    """
    limits = settings.live.current  # a Config resource may change them while the app runs
    check_nesting(spec, {}, limit=limits.max_nesting_depth)
    service.check_spec_size(spec, limit=limits.max_spec_bytes)
    async with session.begin():
        definition, is_new = await service.register(session, spec=spec)
        body = service.describe(definition)
    return JSONResponse(body.model_dump(mode="json"), status_code=201 if is_new else 200)


@router.get("", dependencies=[ReadKey], response_model=DefinitionList, responses=errors(422))
async def list_definitions(
    session: SessionDep,
    name: Annotated[str | None, Query(max_length=100, description="only this workflow")] = None,
    include_archived: Annotated[bool, Query(description="list archived versions too")] = False,
    include_spec: Annotated[bool, Query(description="each item with its whole spec")] = False,
) -> DefinitionList:
    """Registered workflows, every version, as summaries (the spec only with include_spec)."""
    items = await service.list_definitions(
        session, name=name, include_archived=include_archived, include_spec=include_spec
    )
    return DefinitionList(items=items)


@router.delete(
    "/{name}",
    dependencies=[AdminKey],
    response_model=DefinitionList,
    responses=errors(404, 409, 422),
)
async def archive_definition(
    name: str, session: SessionDep, version: Version = None
) -> DefinitionList:
    """Archive a workflow (every version, or `?version=N`): no new runs, its runs stay readable.

    Nothing is deleted. 404 for an unknown name or version; 409 `definition_in_use` while an
    enabled schedule would fire it. Answers with the versions concerned.
    """
    async with session.begin():
        rows = await service.archive(session, name=name, version=version)
        return DefinitionList(items=[service.summarize(row) for row in rows])


@router.post(
    "/{name}/restore",
    dependencies=[AdminKey],
    response_model=DefinitionList,
    responses=errors(404, 409, 422),
)
async def restore_definition(
    name: str, session: SessionDep, version: Version = None
) -> DefinitionList:
    """Take an archived workflow (every version, or `?version=N`) back; 404 when unknown."""
    async with session.begin():
        rows = await service.restore(session, name=name, version=version)
        return DefinitionList(items=[service.summarize(row) for row in rows])
