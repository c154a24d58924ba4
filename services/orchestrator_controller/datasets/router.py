"""GET /datasets, /datasets/{name}/loads and /datasets/{name}/versions: what merges loaded."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.orchestrator_controller.datasets import service
from services.orchestrator_controller.datasets.schemas import (
    DatasetOut,
    DatasetPath,
    LoadPage,
    VersionPage,
)
from services.orchestrator_controller.deps import ReadKey, SessionDep
from shared.errors import errors

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=errors(401, 403, 404, 422, 503))

Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]


@router.get("", dependencies=[ReadKey], response_model=list[DatasetOut])
async def list_datasets(session: SessionDep, limit: Limit = 100) -> list[DatasetOut]:
    """Every dataset a merge has loaded, with its latest load."""
    return await service.datasets(session, limit=limit)


@router.get("/{name}/loads", dependencies=[ReadKey], response_model=LoadPage)
async def list_loads(
    name: DatasetPath,
    session: SessionDep,
    limit: Limit = 100,
    before: Annotated[int | None, Query(ge=1, description="only loads with a smaller id")] = None,
) -> LoadPage:
    """The loads of a dataset: run, destination, disposition, counts, version (404 if none)."""
    return LoadPage(
        dataset=name, loads=await service.loads(session, dataset=name, limit=limit, before=before)
    )


@router.get("/{name}/versions", dependencies=[ReadKey], response_model=VersionPage)
async def list_versions(name: DatasetPath, session: SessionDep, limit: Limit = 100) -> VersionPage:
    """The destination versions the loads made; read one with the merger's `snapshot` action
    or any Delta reader (`deltalake.DeltaTable(uri, version=N)`)."""
    return VersionPage(
        dataset=name, versions=await service.versions(session, dataset=name, limit=limit)
    )
