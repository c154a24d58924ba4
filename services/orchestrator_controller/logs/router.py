"""GET /workflows/{id}/logs: a run's log lines from every service."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.orchestrator_controller.deps import ReadKey, SettingsDep
from services.orchestrator_controller.logs import service
from services.orchestrator_controller.logs.schemas import RunLogs
from services.orchestrator_controller.runs.service import parse_run_id
from shared.db.models import WorkflowRun
from shared.errors import ErrorBody, NotFound, errors

router = APIRouter(tags=["logs"])


@router.get(
    "/workflows/{run_id}/logs",
    dependencies=[ReadKey],
    response_model=RunLogs,
    # A line's fields as written: those it does not have are left out, not shown as null.
    response_model_exclude_unset=True,
    responses={
        **errors(401, 403, 404, 422, 503),
        409: {"model": ErrorBody, "description": "no log files to read (CONTROLLER_LOG_DIR unset)"},
    },
)
async def run_logs(
    run_id: str,
    request: Request,
    settings: SettingsDep,
    step: Annotated[str | None, Query(max_length=64, description="only this step")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="the last N lines")] = 1000,
) -> RunLogs:
    """The run's lines from every service (engine, agents, controller), oldest first."""
    parsed = parse_run_id(run_id)
    # A session of its own, given back before the files are read.
    async with request.app.state.sessionmaker() as session:
        if await session.get(WorkflowRun, parsed) is None:
            raise NotFound(f"no workflow run {run_id}")
    folder = service.log_folder(settings.log_dir)
    # Reading files blocks: off the event loop.
    return await asyncio.to_thread(
        service.read_run_logs, folder, run_id=parsed, step=step, limit=limit
    )
