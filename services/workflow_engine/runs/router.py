"""POST /execute: start an accepted run now (the worker loops also find it on their own)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.workflow_engine.runs.schemas import ExecuteRequest, ExecuteResponse
from shared.auth import require_token
from shared.db.models import WorkflowRun
from shared.errors import NotFound, errors

router = APIRouter()


@router.post(
    "/execute",
    status_code=202,
    response_model=ExecuteResponse,
    responses=errors(401, 404, 413, 422, 503),
)
async def execute(body: ExecuteRequest, request: Request) -> JSONResponse:
    """Accept runs for execution (idempotent): the starter loop starts them in a batch."""
    settings = request.app.state.settings
    require_token(request, settings.service_tokens())
    wanted = body.all_ids()
    async with request.app.state.sessionmaker() as session:
        rows = await session.execute(
            select(WorkflowRun.id, WorkflowRun.status).where(WorkflowRun.id.in_(wanted))
        )
        statuses = {row.id: row.status for row in rows}
    missing = [str(run_id) for run_id in wanted if run_id not in statuses]
    if missing:
        raise NotFound(f"no workflow run {', '.join(missing)}")
    executor = getattr(request.app.state, "executor", None)
    if executor is not None and "PENDING" in statuses.values():
        executor.run_wake.set()  # usually a NOTIFY has already had them started
    response = ExecuteResponse(runs=statuses, accepted=True)
    return JSONResponse(response.model_dump(mode="json"), status_code=202)
