"""POST /execute: start an accepted run now (the worker loops also find it on their own)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.workflow_engine.runs.schemas import ExecuteRequest, ExecuteResponse
from shared.auth import require_token
from shared.db.models import WorkflowRun
from shared.errors import NotFound

router = APIRouter()


@router.post("/execute", status_code=202, response_model=ExecuteResponse)
async def execute(body: ExecuteRequest, request: Request) -> JSONResponse:
    """Accept run `run_id` for execution (idempotent): the starter loop starts it in a batch."""
    settings = request.app.state.settings
    require_token(request, [settings.service_token.get_secret_value()])
    async with request.app.state.sessionmaker() as session:
        status = (
            await session.execute(select(WorkflowRun.status).where(WorkflowRun.id == body.run_id))
        ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no workflow run {body.run_id}")
    executor = getattr(request.app.state, "executor", None)
    if executor is not None:
        executor.run_wake.set()
    response = ExecuteResponse(run_id=body.run_id, status=status, accepted=True)
    return JSONResponse(response.model_dump(mode="json"), status_code=202)
