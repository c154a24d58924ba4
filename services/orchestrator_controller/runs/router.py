"""POST /coordinate, GET /workflows/status, GET /workflows/{id}, POST /workflows/{id}/cancel."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from services.orchestrator_controller.deps import ReadKey, SessionDep, SettingsDep, SubmitKey
from services.orchestrator_controller.runs import service
from services.orchestrator_controller.runs.schemas import (
    CancelResponse,
    CoordinateRequest,
    CoordinateResponse,
    RunDetail,
    RunPage,
)
from shared.errors import ValidationFailed, errors
from shared.spec.models import MAX_INT32
from shared.state.machine import RunStatus
from shared.state.stopping import request_cancel
from shared.tracing import run_span

router = APIRouter(tags=["runs"], responses=errors(401, 403, 503))


@router.post(
    "/coordinate",
    dependencies=[SubmitKey],
    status_code=202,
    response_model=CoordinateResponse,
    responses={
        200: {"model": CoordinateResponse, "description": "the run of a repeated Idempotency-Key"},
        **errors(404, 409, 413, 422),
    },
)
async def coordinate(
    body: CoordinateRequest,
    request: Request,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Accept a run: 202 once it is committed; 200 with the same run for a repeated key."""
    received = time.time_ns()  # the root span starts with the request, not once the id is known
    if idempotency_key is not None and not idempotency_key.strip():
        raise ValidationFailed("Idempotency-Key: must not be blank")
    # The lock-free part first, on a connection given back before admission (which is batched
    # with concurrent requests, on a connection of its own).
    async with session.begin():
        item = await service.prepare_run(
            session,
            body=body,
            idempotency_key=idempotency_key,
            policies=request.app.state.policies,
            max_nesting_depth=request.app.state.settings.live.current.max_nesting_depth,
            max_spec_bytes=request.app.state.settings.live.current.max_spec_bytes,
            # set by the SubmitKey dependency: the id of the key that was checked
            submitted_by=request.state.api_key_id,
        )
    accepted = await request.app.state.admissions.accept(item)
    run = accepted.run
    if accepted.created:
        # The run's trace starts here: its id is the run's trace_id (a repeat adds no span).
        with run_span(
            run.trace_id,
            "coordinate",
            attributes={"run_id": str(run.id), "workflow": run.workflow_name},
            start_time=received,
        ):
            request.app.state.handoff.kick(run.id)
    response = CoordinateResponse.of(run, created=accepted.created)
    return JSONResponse(
        response.model_dump(mode="json"),
        status_code=202 if accepted.created else 200,
        headers={"Location": response.status_url},
    )


@router.post(
    "/workflows/{run_id}/retry",
    dependencies=[SubmitKey],
    status_code=202,
    response_model=CoordinateResponse,
    responses=errors(404, 409, 422),
)
async def retry(run_id: str, request: Request, session: SessionDep) -> JSONResponse:
    """Retry a FAILED or CANCELLED run from its failed steps: a new run, linked to the old by
    `retry_of`, with the old run's spec and inputs; steps that succeeded keep their outputs
    and do not run again. 409 for a run in any other state."""
    received = time.time_ns()
    parsed = service.parse_run_id(run_id)
    async with session.begin():
        item = await service.prepare_retry(
            session, run_id=parsed, submitted_by=request.state.api_key_id
        )
    accepted = await request.app.state.admissions.accept(item)
    run = accepted.run
    with run_span(
        run.trace_id,
        "retry",
        attributes={"run_id": str(run.id), "workflow": run.workflow_name, "retry_of": run_id},
        start_time=received,
    ):
        request.app.state.handoff.kick(run.id)
    response = CoordinateResponse.of(run, created=True)
    return JSONResponse(
        response.model_dump(mode="json"),
        status_code=202,
        headers={"Location": response.status_url},
    )


@router.get(
    "/workflows/status", dependencies=[ReadKey], response_model=RunPage, responses=errors(422)
)
async def workflows_status(
    session: SessionDep,
    status: RunStatus | None = None,
    workflow: str | None = None,
    submitted_by: Annotated[
        str | None, Query(max_length=100, description="an API key's id, or schedule:<id>")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    # Bounded so no value reaches PostgreSQL out of its integer range (a 500 before).
    offset: Annotated[int, Query(ge=0, le=MAX_INT32)] = 0,
) -> RunPage:
    """Runs, newest first; filter by status, workflow and submitter; paginate."""
    return await service.list_runs(
        session,
        status=status,
        workflow=workflow,
        submitted_by=submitted_by,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/workflows/{run_id}",
    dependencies=[ReadKey],
    response_model=RunDetail,
    responses=errors(404, 422),
)
async def workflow_detail(run_id: str, session: SessionDep) -> RunDetail:
    """One run with every step: status, attempts, timings, output, error."""
    return await service.get_run(session, run_id=service.parse_run_id(run_id))


@router.post(
    "/workflows/{run_id}/cancel",
    dependencies=[SubmitKey],
    status_code=202,
    response_model=CancelResponse,
    responses=errors(404, 409, 422),
)
async def cancel(run_id: str, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Stop a run: no new steps start; it ends CANCELLED (or compensates, if the spec says)."""
    parsed = service.parse_run_id(run_id)
    async with session.begin():
        run = await request_cancel(
            session, parsed, reason="cancelled by request", schema=settings.db_schema
        )
    return JSONResponse(
        {"run_id": str(run.id), "status": run.status, "cancel_requested": True}, status_code=202
    )
