"""Creating, changing, listing and deleting schedules; the first fire time of each."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.definitions import service as definitions
from services.orchestrator_controller.runs.inputs import bind_inputs
from services.orchestrator_controller.schedules.schemas import (
    AdaptiveDecision,
    FireOut,
    ScheduleCreate,
    ScheduleFields,
    ScheduleOut,
    ScheduleUpdate,
)
from services.orchestrator_controller.schedules.timing import Timing, jitter_for
from shared.db.models import Schedule
from shared.errors import Conflict, NotFound, ValidationFailed

TRIGGER_FIELDS = ("cron", "interval_s", "continuous", "mode")


async def check_target(
    session: AsyncSession, *, workflow: str, version: int | None, inputs: dict[str, Any]
) -> None:
    """422 naming `workflow` or `inputs.<name>` unless a run of it could start as given."""
    try:
        # locked: an archive of this version waits for the schedule, and then sees it
        spec = await definitions.resolve(session, name=workflow, version=version, lock=True)
    except NotFound as exc:
        raise ValidationFailed(
            f"workflow: {exc.message}",
            code="unknown_workflow",
            details=[{"field": "workflow", "message": exc.message}],
        ) from exc
    bind_inputs(spec, inputs)


def timing_of(schedule: Schedule) -> Timing | None:
    """The fire times of a cron or interval schedule (None for continuous and adaptive)."""
    if schedule.trigger in ("continuous", "adaptive"):
        return None
    return Timing(
        cron=schedule.cron,
        timezone=schedule.timezone,
        interval_s=schedule.interval_s,
        anchor_at=schedule.anchor_at,
    )


def set_next_fire(schedule: Schedule, fire_at: datetime | None) -> None:
    """Make `fire_at` the next fire; the ticker acts on it once its jitter has passed too."""
    schedule.next_fire_at = fire_at
    schedule.next_due_at = (
        None if fire_at is None else fire_at + jitter_for(schedule.id, fire_at, schedule.jitter_s)
    )


def plan_from(schedule: Schedule, now: datetime) -> None:
    """Restart the schedule's clock at `now`: what lay before (a disabled spell) is not owed."""
    schedule.buffered_fire_at = None
    timing = timing_of(schedule)
    if not schedule.enabled:
        set_next_fire(schedule, None)
    elif schedule.trigger == "adaptive":
        # the first fire after the shortest interval; the agent picks every later one
        set_next_fire(schedule, now + timedelta(seconds=schedule.min_interval_s))
    elif timing is None:
        # continuous: the ticker starts a run now unless the last one is still going
        set_next_fire(schedule, None)
    elif timing is not None:
        set_next_fire(schedule, timing.next_after(now - timedelta(microseconds=1)))


# The fields of a schedule kept as they are in a column, named once: ScheduleFields (what is
# written), fields_of (what a PATCH merges into) and ScheduleOut (what is shown) all read this.
# The trigger, an interval's start and the adaptive decision are derived: handled apart.
STORED: dict[str, str] = {
    "workflow": "workflow_name",
    "version": "workflow_version",
    **{
        name: name
        for name in (
            "inputs", "priority", "cron", "timezone", "interval_s", "min_interval_s",
            "max_interval_s", "backoff_initial_s", "backoff_max_s", "catchup", "max_catchup",
            "overlap", "jitter_s", "enabled",
        )
    },
}  # fmt: skip


def _stored(schedule: Schedule) -> dict[str, Any]:
    return {field: getattr(schedule, column) for field, column in STORED.items()}


def _apply(schedule: Schedule, fields: ScheduleFields, now: datetime) -> None:
    for field, column in STORED.items():
        setattr(schedule, column, getattr(fields, field))
    schedule.trigger = fields.trigger
    if fields.interval_s is not None:
        schedule.anchor_at = fields.start_at or now + timedelta(seconds=fields.interval_s)
    else:
        schedule.anchor_at = None
    if fields.trigger != "adaptive":
        schedule.adaptive_decision = None
    schedule.updated_at = now


async def create(
    session: AsyncSession,
    *,
    body: ScheduleCreate,
    now: datetime,
    source: str = "api",
    validate: bool = True,
) -> Schedule | None:
    """Store a new schedule; None when one of that name exists (409 for API callers)."""
    if validate:
        await check_target(
            session, workflow=body.workflow, version=body.version, inputs=body.inputs
        )
    schedule = Schedule(id=uuid.uuid4(), name=body.name, source=source, created_at=now)
    _apply(schedule, body, now)
    schedule.auto_enable = False
    schedule.consecutive_failures = 0
    schedule.missed_fires = 0
    plan_from(schedule, now)
    columns = {c.key: getattr(schedule, c.key) for c in Schedule.__table__.columns}
    for unset in (
        "status_reason",
        "last_fire_at",
        "last_run_id",
        "buffered_fire_at",
        "adaptive_decision",
    ):
        columns[unset] = None
    inserted = await session.execute(
        insert(Schedule)
        .values(**columns)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Schedule.id)
    )
    if inserted.first() is None:
        return None
    return await session.get(Schedule, schedule.id)


async def find(session: AsyncSession, ref: str, *, lock: bool = False) -> Schedule:
    """A schedule by id or by name; 404 when there is none."""
    query = select(Schedule)
    try:
        query = query.where(Schedule.id == uuid.UUID(ref))
    except ValueError:
        query = query.where(Schedule.name == ref)
    if lock:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no schedule {ref!r}")
    return found


def fields_of(schedule: Schedule) -> dict[str, Any]:
    """The schedule as ScheduleFields input (what a PATCH is merged into)."""
    return {
        **_stored(schedule),
        "start_at": schedule.anchor_at if schedule.trigger == "interval" else None,
        "continuous": schedule.trigger == "continuous",
        "mode": "adaptive" if schedule.trigger == "adaptive" else None,
    }


def _validated(merged: dict[str, Any]) -> ScheduleFields:
    try:
        return ScheduleFields.model_validate(merged)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        first = errors[0]
        prefix = f"{first['field']}: " if first["field"] else ""
        raise ValidationFailed(f"{prefix}{first['message']}", details=errors) from None


async def update(
    session: AsyncSession, *, ref: str, patch: ScheduleUpdate, now: datetime
) -> Schedule:
    """Change a schedule; timing or enabling changes restart its clock at `now`."""
    schedule = await find(session, ref, lock=True)
    given = patch.model_dump(exclude_unset=True)
    merged = fields_of(schedule)
    if any(name in given for name in TRIGGER_FIELDS):
        merged.update(cron=None, interval_s=None, continuous=False, start_at=None, mode=None)
        if "mode" not in given:
            merged.update(max_interval_s=None)
    merged.update(given)
    fields = _validated(merged)
    enabling = fields.enabled and not schedule.enabled
    if enabling or {"workflow", "version", "inputs"} & set(given):
        await check_target(
            session, workflow=fields.workflow, version=fields.version, inputs=fields.inputs
        )
    retime = enabling or bool(
        {*TRIGGER_FIELDS, "timezone", "start_at", "jitter_s", "max_interval_s"} & set(given)
    )
    _apply(schedule, fields, now)
    if not fields.enabled:
        schedule.auto_enable = False
        set_next_fire(schedule, None)
    elif retime:
        schedule.status_reason = None
        schedule.consecutive_failures = 0
        plan_from(schedule, now)
    await session.flush()
    return schedule


async def delete(session: AsyncSession, *, ref: str) -> None:
    """Remove a schedule and its fire history (its runs stay)."""
    schedule = await find(session, ref, lock=True)
    if schedule.source == "seed":
        raise Conflict(
            f"schedule {schedule.name!r} is a seed schedule and would come back at the next "
            "start; disable it instead (PATCH enabled=false)",
            code="seed_schedule",
        )
    await session.delete(schedule)
    await session.flush()


async def list_schedules(session: AsyncSession, *, workflow: str | None) -> list[Schedule]:
    """Every schedule, by name."""
    query = select(Schedule).order_by(Schedule.name)
    if workflow:
        query = query.where(Schedule.workflow_name == workflow)
    return list((await session.execute(query)).scalars())


async def _recent_fires(
    session: AsyncSession, ids: list[uuid.UUID], count: int
) -> dict[uuid.UUID, list[FireOut]]:
    rows = await session.execute(
        text(
            "SELECT * FROM (SELECT f.*, r.status AS run_status, row_number() OVER "
            "(PARTITION BY f.schedule_id ORDER BY f.fire_at DESC) AS n "
            "FROM schedule_fires f LEFT JOIN workflow_runs r ON r.id = f.run_id "
            "WHERE f.schedule_id = ANY(:ids)) recent WHERE n <= :count ORDER BY fire_at DESC"
        ),
        {"ids": ids, "count": count},
    )
    out: dict[uuid.UUID, list[FireOut]] = {i: [] for i in ids}
    for row in rows:
        out[row.schedule_id].append(
            FireOut(
                fire_at=row.fire_at,
                outcome=row.outcome,
                detail=row.detail,
                run_id=row.run_id,
                run_status=row.run_status,
                fired_at=row.created_at,
            )
        )
    return out


def next_fires(schedule: Schedule, count: int) -> list[datetime]:
    """The next `count` fire times (nominal, before jitter); empty when disabled."""
    if not schedule.enabled or schedule.next_fire_at is None or count <= 0:
        return []
    timing = timing_of(schedule)
    if timing is None:
        return [schedule.next_fire_at]
    return [schedule.next_fire_at, *timing.upcoming(schedule.next_fire_at, count - 1)]


async def describe(
    session: AsyncSession, schedules: list[Schedule], *, next_count: int, runs_count: int
) -> list[ScheduleOut]:
    """Schedules as the API shows them: next fire times and last fires with their runs."""
    fires = await _recent_fires(session, [s.id for s in schedules], runs_count)
    return [
        ScheduleOut(
            **_stored(s),
            id=s.id,
            name=s.name,
            trigger=s.trigger,
            start_at=s.anchor_at,
            decision=AdaptiveDecision.model_validate(s.adaptive_decision)
            if s.adaptive_decision
            else None,
            status_reason=s.status_reason,
            source=s.source,
            next_fire_times=next_fires(s, next_count),
            buffered_fire_at=s.buffered_fire_at,
            consecutive_failures=s.consecutive_failures,
            missed_fires=s.missed_fires,
            last_runs=fires[s.id],
            created_at=s.created_at,
            updated_at=s.updated_at,
        )
        for s in schedules
    ]
