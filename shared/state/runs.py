"""Accepting runs (PENDING) and starting them (RUNNING, their step rows created); admission
waits are in admission.py, cancelling in stopping.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import WorkflowRun
from shared.events.outbox import Event, emit
from shared.spec.models import StepSpec, WorkflowSpec, parse_spec
from shared.state.machine import RunStatus
from shared.state.needs import needs_column, step_needs
from shared.state.transitions import ACCEPT, CREATE, PROMOTE, REUSE, START, step_events


@dataclass
class NewRun:
    spec: WorkflowSpec
    inputs: dict[str, Any]
    priority: int = 0
    admitted: bool = True
    status_reason: str | None = None
    run_id: uuid.UUID | None = None
    submitted_by: str | None = None  # an API key's id, schedule:<id>, ...
    retry_of: uuid.UUID | None = None  # the failed run whose succeeded steps this one reuses


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
            submitted_by=new.submitted_by,
            retry_of=new.retry_of,
            created_at=now,
            admitted_at=now if new.admitted else None,
        )
        for new in news
    ]
    session.add_all(runs)
    await session.flush()
    events = [
        Event(
            ACCEPT.event_for(RunStatus.PENDING) or "",
            run.id,
            {
                "workflow": run.workflow_name,
                "version": run.workflow_version,
                "kind": run.kind,
                **({} if new.admitted else {"waiting": new.status_reason}),
            },
        )
        for run, new in zip(runs, news, strict=True)
    ]
    admitted = any(new.admitted for new in news)
    await emit(session, events, schema=schema, wake="runs" if admitted else None)
    return runs


@dataclass
class RunContext:
    """What executing a run's steps needs: returned by `start_runs` for the runs it started
    (so no one re-reads them) and kept by the engine for the runs it works on."""

    spec: WorkflowSpec
    inputs: dict[str, Any]
    trace_id: str
    deadline_at: datetime | None
    # the engine's cache of each map_over step's rendered list, filled as it fans out
    map_items: dict[str, list[Any]] = field(default_factory=dict)


async def start_runs(
    session: AsyncSession,
    run_ids: list[uuid.UUID],
    *,
    schema: str | None,
    owner: str | None = None,
) -> dict[uuid.UUID, RunContext]:
    """PENDING -> RUNNING: create the step rows (roots READY) in one round of statements.

    Runs another engine is starting right now are skipped (SKIP LOCKED); returns those started,
    in order. `owner`, the starting engine, becomes the steps' affinity (it claims them first).
    """
    runs = (await session.execute(_LOCK_STARTABLE, {"ids": run_ids})).all()
    if not runs:
        return {}
    now = datetime.now(UTC)
    steps = _StepRows()
    deadlines: list[datetime | None] = []
    contexts: dict[uuid.UUID, RunContext] = {}
    for run in runs:
        spec = parse_spec(run.spec)
        for step in spec.steps:
            steps.add(run.id, step, run.priority)
        deadline = now + timedelta(seconds=spec.timeout_s) if spec.timeout_s else None
        deadlines.append(deadline)
        contexts[run.id] = RunContext(spec, run.inputs, run.trace_id, deadline)
    rows = await session.execute(
        _START,
        {
            "ids": [run.id for run in runs],
            "deadlines": deadlines,
            "now": now,
            "affinity": owner,
            **steps.columns(),
        },
    )
    started: set[uuid.UUID] = set()
    created = []
    events: list[Event] = []
    for row in rows:
        if row.step_id is None:
            started.add(row.run_id)
            data = {"workflow": contexts[row.run_id].spec.name}
            events.append(Event(START.event_for(RunStatus.RUNNING) or "", row.run_id, data))
        else:
            created.append(row)
    events += step_events(CREATE, created)
    retries = [run.id for run in runs if run.retry_of is not None and run.id in started]
    if retries:
        events += await _reuse_succeeded_steps(session, retries, now=now)
    await emit(session, events, schema=schema, wake=owner or "steps")
    return {run_id: context for run_id, context in contexts.items() if run_id in started}


_LOCK_STARTABLE = text(
    "SELECT id, workflow_name, spec::text AS spec, inputs, trace_id, priority, retry_of "
    f"FROM workflow_runs WHERE id = ANY(:ids) AND {START.sql()} "
    "AND admitted_at IS NOT NULL ORDER BY id FOR UPDATE SKIP LOCKED"
)

# One statement for every run of the batch: runs RUNNING, their step rows inserted (roots READY).
# `depends_on` and `needs` travel comma-joined, since unnest cannot take an array per row (step
# ids have no commas: STEP_ID_PATTERN; '' is an empty array, NULL stays NULL). Returns the runs
# started (step_id NULL) and the rows created.
_START = text(
    f"""
WITH started AS (
    UPDATE workflow_runs r SET status = '{START.to}', started_at = :now, deadline_at = v.deadline,
        status_reason = NULL
    FROM unnest(CAST(:ids AS uuid[]), CAST(:deadlines AS timestamptz[])) AS v(id, deadline)
    WHERE r.id = v.id AND {START.sql("r.status")}
    RETURNING r.id
), created AS (
INSERT INTO step_runs (run_id, step_id, role, map_index, agent, action, depends_on, status,
                       priority, attempts, max_attempts, ready_at, attempt_log, affinity, needs)
SELECT s.run_id, s.step_id, 'action', -1, s.agent, s.action, string_to_array(s.deps, ','),
       CASE WHEN s.deps = '' THEN 'READY' ELSE 'PENDING' END, s.priority, 0, s.max_attempts,
       CASE WHEN s.deps = '' THEN CAST(:now AS timestamptz) END, '[]'::jsonb, :affinity,
       string_to_array(s.needs, ',')
FROM unnest(CAST(:run_ids AS uuid[]), CAST(:step_ids AS text[]), CAST(:agents AS text[]),
            CAST(:actions AS text[]), CAST(:deps AS text[]), CAST(:priorities AS int[]),
            CAST(:max_attempts AS int[]), CAST(:needs AS text[]))
     AS s(run_id, step_id, agent, action, deps, priority, max_attempts, needs)
JOIN started ON started.id = s.run_id
RETURNING run_id, step_id, role, map_index, status
)
SELECT id AS run_id, NULL AS step_id, NULL AS role, NULL AS map_index, NULL AS status
FROM started
UNION ALL SELECT run_id, step_id, role, map_index, status FROM created
"""
)


# A retry's steps that succeeded in the failed run take that run's output instead of running
# again (top-level rows: a map_over step is reused whole or rerun whole); steps whose every
# dependency was reused become READY. The promotion excludes the reused rows themselves: one
# statement must not update a row twice.
_REUSE = text(
    f"""
WITH reused AS (
    UPDATE step_runs n
    SET status = '{REUSE.to}', output = o.output, ready_at = :now, started_at = :now,
        finished_at = :now, status_reason = 'reused from run ' || r.retry_of::text
    FROM workflow_runs r
    JOIN step_runs o ON o.run_id = r.retry_of AND o.role = 'action' AND o.map_index = -1
                    AND o.status = 'SUCCEEDED'
    WHERE r.id = ANY(:ids) AND n.run_id = r.id AND n.step_id = o.step_id
      AND n.role = 'action' AND n.map_index = -1 AND {REUSE.sql("n.status")}
    RETURNING n.run_id, n.step_id, n.role, n.map_index, r.retry_of
), promoted AS (
    UPDATE step_runs p SET status = '{PROMOTE.to}', ready_at = :now
    WHERE p.run_id = ANY(:ids) AND {PROMOTE.sql("p.status")} AND p.role = 'action'
      AND NOT EXISTS (SELECT 1 FROM reused x WHERE x.run_id = p.run_id AND x.step_id = p.step_id)
      AND p.depends_on <@ (SELECT array_agg(x.step_id)::varchar[] FROM reused x
                           WHERE x.run_id = p.run_id)
    RETURNING p.run_id, p.step_id, p.role, p.map_index
)
SELECT run_id, step_id, role, map_index, retry_of, 'SUCCEEDED' AS status FROM reused
UNION ALL SELECT run_id, step_id, role, map_index, NULL, 'READY' FROM promoted
"""
)


async def _reuse_succeeded_steps(
    session: AsyncSession, run_ids: list[uuid.UUID], *, now: datetime
) -> list[Event]:
    """Carry the failed runs' succeeded steps into their retries; the events say so."""
    rows = (await session.execute(_REUSE, {"ids": run_ids, "now": now})).all()
    events = []
    for row in rows:
        if row.retry_of is None:
            events += step_events(PROMOTE, [row])
        else:
            events += step_events(REUSE, [row], reused_from=str(row.retry_of))
    return events


@dataclass
class _StepRows:
    """The step rows of a batch of runs, column by column (as _START's unnest takes them)."""

    run_ids: list[uuid.UUID] = field(default_factory=list)
    step_ids: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    priorities: list[int] = field(default_factory=list)
    max_attempts: list[int] = field(default_factory=list)
    needs: list[str | None] = field(default_factory=list)

    def add(self, run_id: uuid.UUID, step: StepSpec, priority: int) -> None:
        self.run_ids.append(run_id)
        self.step_ids.append(step.id)
        self.agents.append(step.agent)
        self.actions.append(step.action)
        self.deps.append(",".join(step.depends_on))
        self.priorities.append(priority)
        self.max_attempts.append(step.retry.max_attempts)
        self.needs.append(needs_column(step_needs(step)))

    def columns(self) -> dict[str, list[Any]]:
        return dict(self.__dict__)


async def startable_runs(session: AsyncSession, *, limit: int) -> list[uuid.UUID]:
    """Admitted PENDING runs, highest priority and oldest first, locked for this transaction.

    Runs another engine's starter holds are skipped rather than waited for: replicas starting
    runs at once take different ones, instead of one finding nothing and idling.
    """
    rows = await session.execute(
        text(
            f"SELECT id FROM workflow_runs WHERE {START.sql()} AND admitted_at IS NOT NULL "
            "ORDER BY priority DESC, created_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    )
    return [row.id for row in rows]
