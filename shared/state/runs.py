"""Run-level transitions: accept (PENDING), start (RUNNING), cancel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import StepRun, WorkflowRun
from shared.errors import Conflict, NotFound
from shared.events.outbox import Event, emit
from shared.spec.models import WorkflowSpec
from shared.state.machine import RUN_EVENT, TERMINAL_RUN, RunStatus, StepStatus


@dataclass
class NewRun:
    spec: WorkflowSpec
    inputs: dict[str, Any]
    priority: int = 0
    admitted: bool = True
    status_reason: str | None = None
    run_id: uuid.UUID | None = None


async def create_run(session: AsyncSession, new: NewRun, *, schema: str | None) -> WorkflowRun:
    """Insert a PENDING run and its `ingestion.workflow.pending` event."""
    [run] = await create_runs(session, [new], schema=schema)
    return run


async def create_runs(
    session: AsyncSession, news: list[NewRun], *, schema: str | None
) -> list[WorkflowRun]:
    """Insert PENDING runs (one INSERT) and their `ingestion.workflow.pending` events."""
    now = datetime.now(UTC)
    runs = [
        WorkflowRun(
            id=new.run_id or uuid.uuid4(),
            workflow_name=new.spec.name,
            workflow_version=new.spec.version,
            kind=new.spec.kind,
            spec=new.spec.model_dump(mode="json"),
            inputs=new.inputs,
            status=RunStatus.PENDING,
            status_reason=new.status_reason,
            priority=new.priority,
            trace_id=uuid.uuid4().hex,
            cancel_requested=False,
            created_at=now,
            admitted_at=now if new.admitted else None,
        )
        for new in news
    ]
    session.add_all(runs)
    await session.flush()
    events = [
        Event(
            RUN_EVENT[RunStatus.PENDING],
            run.id,
            {"workflow": run.workflow_name, "version": run.workflow_version, "kind": run.kind},
        )
        for run in runs
    ]
    admitted = any(new.admitted for new in news)
    await emit(session, events, schema=schema, wake="runs" if admitted else None)
    return runs


async def admit_run(session: AsyncSession, run_id: uuid.UUID, *, schema: str | None) -> None:
    """Let a PENDING run held back by a policy be started by an engine."""
    await session.execute(
        text(
            "UPDATE workflow_runs SET admitted_at = now(), status_reason = NULL "
            "WHERE id = :id AND status = 'PENDING' AND admitted_at IS NULL"
        ),
        {"id": run_id},
    )
    await emit(session, [], schema=schema, wake="runs")


async def start_run(session: AsyncSession, run_id: uuid.UUID, *, schema: str | None) -> bool:
    """PENDING -> RUNNING for one run; False if it is not startable now."""
    return bool(await start_runs(session, [run_id], schema=schema))


@dataclass(frozen=True)
class StartedRun:
    """A run just started, with what executing its steps needs (so no one re-reads it)."""

    id: uuid.UUID
    spec: WorkflowSpec
    inputs: dict[str, Any]
    trace_id: str
    deadline_at: datetime | None


async def start_runs(
    session: AsyncSession,
    run_ids: list[uuid.UUID],
    *,
    schema: str | None,
    owner: str | None = None,
) -> list[StartedRun]:
    """PENDING -> RUNNING: create the step rows (roots READY) in one round of statements.

    Runs another engine is starting right now are skipped (SKIP LOCKED); returns those started.
    `owner`, the starting engine, becomes the steps' affinity (it claims them first).
    """
    runs = (
        (
            await session.execute(
                select(WorkflowRun)
                .where(
                    WorkflowRun.id.in_(run_ids),
                    WorkflowRun.status == RunStatus.PENDING,
                    WorkflowRun.admitted_at.is_not(None),
                )
                .order_by(WorkflowRun.id)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not runs:
        return []
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    events: list[Event] = []
    started: list[StartedRun] = []
    for run in runs:
        spec = WorkflowSpec.model_validate(run.spec)
        for step in spec.steps:
            ready = not step.depends_on
            rows.append(
                {
                    "run_id": run.id,
                    "step_id": step.id,
                    "role": "action",
                    "map_index": -1,
                    "agent": step.agent,
                    "action": step.action,
                    "depends_on": list(step.depends_on),
                    "status": StepStatus.READY if ready else StepStatus.PENDING,
                    "priority": run.priority,
                    "attempts": 0,
                    "max_attempts": step.retry.max_attempts,
                    "ready_at": now if ready else None,
                    "attempt_log": [],
                    "affinity": owner,
                }
            )
        run.status = RunStatus.RUNNING
        run.started_at = now
        if spec.timeout_s:
            run.deadline_at = now + timedelta(seconds=spec.timeout_s)
        events.append(Event(RUN_EVENT[RunStatus.RUNNING], run.id, {"workflow": run.workflow_name}))
        started.append(StartedRun(run.id, spec, run.inputs, run.trace_id, run.deadline_at))
    await session.execute(insert(StepRun), rows)
    await session.flush()
    await emit(session, events, schema=schema, wake=owner or "steps")
    return started


async def startable_runs(session: AsyncSession, *, limit: int) -> list[uuid.UUID]:
    """Admitted PENDING runs, highest priority and oldest first, locked for this transaction.

    Runs another engine's starter holds are skipped rather than waited for: replicas starting
    runs at once take different ones, instead of one finding nothing and idling.
    """
    rows = await session.execute(
        text(
            "SELECT id FROM workflow_runs WHERE status = 'PENDING' AND admitted_at IS NOT NULL "
            "ORDER BY priority DESC, created_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    )
    return [row.id for row in rows]


async def request_cancel(
    session: AsyncSession, run_id: uuid.UUID, *, reason: str, schema: str | None
) -> WorkflowRun:
    """Stop a run: nothing new starts; it ends CANCELLED once in-flight steps return."""
    from shared.state.progress import advance_runs, lock_runs  # progress imports this module

    run = (
        await session.execute(select(WorkflowRun).where(WorkflowRun.id == run_id).with_for_update())
    ).scalar_one_or_none()
    if run is None:
        raise NotFound(f"no workflow run {run_id}")
    if run.status in TERMINAL_RUN or run.status == RunStatus.COMPENSATING:
        raise Conflict(f"run {run_id} is already {run.status}; it cannot be cancelled")
    run.cancel_requested = True
    run.status_reason = reason
    if run.status == RunStatus.PENDING:
        run.status = RunStatus.CANCELLED
        run.finished_at = datetime.now(UTC)
        await session.flush()
        await emit(
            session,
            [Event(RUN_EVENT[RunStatus.CANCELLED], run.id, {"reason": reason})],
            schema=schema,
        )
        return run
    await session.flush()
    await advance_runs(session, await lock_runs(session, [run.id]), schema=schema)
    await session.refresh(run)
    return run
