"""Triggering a schedule now, outside its timetable (Temporal's "trigger immediately", Airflow's
"trigger DAG"): one run of the schedule's workflow and inputs, recorded among its fires so the
schedule's page shows it, and held to the schedule's overlap policy like any fire."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.runs.schemas import CoordinateRequest
from services.orchestrator_controller.runs.service import Accepted, accept_run
from services.orchestrator_controller.schedules.service import find
from shared.errors import Conflict
from shared.state.machine import RunStatus

ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPENSATING)

# At `now`, or just after the latest fire if one holds that instant already (a second trigger
# within the same microsecond; tests hold the clock still).
_RECORD = text(
    "INSERT INTO schedule_fires (schedule_id, fire_at, outcome, detail, run_id) "
    "SELECT :sid, greatest(CAST(:at AS timestamptz), "
    "  max(fire_at) + interval '1 microsecond'), 'started', :detail, :run "
    "FROM schedule_fires WHERE schedule_id = :sid AND fire_at >= :at"
)


async def trigger_now(
    session: AsyncSession,
    *,
    ref: str,
    now: datetime,
    policies: Policies,
    schema: str | None,
    submitted_by: str | None,
) -> Accepted:
    """Start the schedule's run now; 409 `schedule_busy` when its last run is still active and
    its overlap policy is not `allow`. The timetable is untouched: the next fire stays due."""
    schedule = await find(session, ref, lock=True)
    if schedule.last_run_id is not None and schedule.overlap != "allow":
        status = await session.scalar(
            text("SELECT status FROM workflow_runs WHERE id = :id"), {"id": schedule.last_run_id}
        )
        if status in ACTIVE:
            raise Conflict(
                f"schedule {schedule.name!r}: its run {schedule.last_run_id} is still {status} "
                f"and its overlap policy is {schedule.overlap!r}",
                code="schedule_busy",
                details={"run_id": str(schedule.last_run_id)},
            )
    accepted = await accept_run(
        session,
        body=CoordinateRequest(
            workflow=schedule.workflow_name,
            version=schedule.workflow_version,
            inputs=schedule.inputs,
            priority=schedule.priority,
        ),
        idempotency_key=None,
        schema=schema,
        policies=policies,
        submitted_by=submitted_by,
    )
    await session.execute(
        _RECORD,
        {
            "sid": schedule.id,
            "at": now,
            "detail": f"triggered now by {submitted_by or 'unknown'}",
            "run": accepted.run.id,
        },
    )
    schedule.last_run_id = accepted.run.id
    return accepted
