"""CRUD under /schedules."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.orchestrator_controller.deps import AdminKey, ReadKey, SessionDep, SubmitKey
from services.orchestrator_controller.runs.schemas import CoordinateResponse
from services.orchestrator_controller.schedules import service
from services.orchestrator_controller.schedules.manual import trigger_now
from services.orchestrator_controller.schedules.schemas import (
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    ScheduleUpdate,
)
from shared.errors import Conflict, errors
from shared.tracing import run_span

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=errors(401, 403, 503))

NextCount = Annotated[
    int, Query(alias="next", ge=0, le=100, description="how many next fire times to show")
]
RunsCount = Annotated[
    int, Query(alias="runs", ge=0, le=100, description="how many last fires (and runs) to show")
]


@router.post(
    "",
    dependencies=[AdminKey],
    status_code=201,
    response_model=ScheduleOut,
    responses=errors(404, 409, 413, 422),
)
async def create_schedule(
    body: ScheduleCreate, request: Request, session: SessionDep
) -> ScheduleOut:
    """Create a schedule (422 naming the field for a bad cron, zone or workflow; 409 name)."""
    async with session.begin():
        schedule = await service.create(session, body=body, now=request.app.state.clock())
        if schedule is None:
            raise Conflict(f"a schedule named {body.name!r} exists", code="schedule_exists")
        (out,) = await service.describe(session, [schedule], next_count=5, runs_count=5)
    return out


@router.get("", dependencies=[ReadKey], response_model=ScheduleList, responses=errors(422))
async def list_schedules(
    session: SessionDep,
    workflow: str | None = None,
    next_count: NextCount = 5,
    runs_count: RunsCount = 5,
) -> ScheduleList:
    """Every schedule with its next fire times and its last fires and runs."""
    schedules = await service.list_schedules(session, workflow=workflow)
    items = await service.describe(session, schedules, next_count=next_count, runs_count=runs_count)
    return ScheduleList(items=items)


@router.get(
    "/{ref}", dependencies=[ReadKey], response_model=ScheduleOut, responses=errors(404, 422)
)
async def get_schedule(
    ref: str, session: SessionDep, next_count: NextCount = 5, runs_count: RunsCount = 10
) -> ScheduleOut:
    """One schedule, by id or name."""
    schedule = await service.find(session, ref)
    (out,) = await service.describe(
        session, [schedule], next_count=next_count, runs_count=runs_count
    )
    return out


@router.patch(
    "/{ref}",
    dependencies=[AdminKey],
    response_model=ScheduleOut,
    responses=errors(404, 409, 413, 422),
)
async def update_schedule(
    ref: str, patch: ScheduleUpdate, request: Request, session: SessionDep
) -> ScheduleOut:
    """Change a schedule; a new trigger, zone or enabling restarts its clock now."""
    async with session.begin():
        schedule = await service.update(
            session, ref=ref, patch=patch, now=request.app.state.clock()
        )
        (out,) = await service.describe(session, [schedule], next_count=5, runs_count=5)
    return out


@router.post(
    "/{ref}/trigger",
    dependencies=[SubmitKey],
    status_code=202,
    response_model=CoordinateResponse,
    responses=errors(404, 409, 422),
)
async def trigger(ref: str, request: Request, session: SessionDep) -> CoordinateResponse:
    """Run the schedule's workflow now, with its inputs, outside its timetable (even when
    disabled); 409 `schedule_busy` while its last run is active and overlap is not `allow`."""
    app = request.app
    received = time.time_ns()
    async with session.begin():
        accepted = await trigger_now(
            session,
            ref=ref,
            now=app.state.clock(),
            policies=app.state.policies,
            schema=app.state.settings.db_schema,
            submitted_by=request.state.api_key_id,
        )
    run = accepted.run
    with run_span(
        run.trace_id,
        "trigger",
        attributes={"run_id": str(run.id), "workflow": run.workflow_name, "schedule": ref},
        start_time=received,
    ):
        if run.admitted_at is not None:
            app.state.handoff.kick(run.id)
    return CoordinateResponse.of(run, created=True)


@router.delete("/{ref}", dependencies=[AdminKey], status_code=204, responses=errors(404, 409, 422))
async def delete_schedule(ref: str, session: SessionDep) -> Response:
    """Delete a schedule (its runs stay); seed schedules are disabled instead (409)."""
    async with session.begin():
        await service.delete(session, ref=ref)
    return Response(status_code=204)
