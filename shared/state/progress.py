"""Moving runs forward after step changes: fan-out windows, skips, readiness, run endings and
saga compensation. Callers hold the run rows locked (`lock_runs`) so that two steps of one run
finishing at once cannot both miss making their common dependent READY."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event, emit
from shared.spec.models import WorkflowSpec
from shared.spec.validation import upstream_of
from shared.state.machine import RUN_EVENT, STEP_EVENT, RunStatus, StepStatus

_TERMINAL = "('SUCCEEDED','FAILED','TIMED_OUT','SKIPPED','CANCELLED','COMPENSATED')"
_BROKEN = "('FAILED','TIMED_OUT','SKIPPED','CANCELLED')"


@dataclass(frozen=True)
class RunChange:
    """A run that reached a new status in this transaction."""

    run_id: uuid.UUID
    status: RunStatus
    kind: str
    duration_s: float | None


@dataclass(frozen=True)
class LockedRuns:
    """What advancing needs to know about the locked runs, read while locking them."""

    ids: list[uuid.UUID]
    stopping: bool  # some run was cancelled or is past its deadline
    compensating: bool  # some run is undoing its steps


async def lock_runs(session: AsyncSession, run_ids: Sequence[uuid.UUID]) -> LockedRuns:
    """Lock runs in id order (a fixed order, so concurrent batches cannot deadlock)."""
    rows = (
        await session.execute(
            text(
                "SELECT id, status, (cancel_requested OR coalesce(deadline_at < now(), false)) "
                "AS stopping FROM workflow_runs WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
            ),
            {"ids": sorted(run_ids)},
        )
    ).all()
    return LockedRuns(
        ids=[row.id for row in rows],
        stopping=any(row.stopping and row.status == "RUNNING" for row in rows),
        compensating=any(row.status == "COMPENSATING" for row in rows),
    )


_STOP_OPEN_STEPS = text(
    """
UPDATE step_runs s SET status = 'CANCELLED', finished_at = now(),
    status_reason = CASE WHEN r.cancel_requested THEN r.status_reason
                         ELSE 'run exceeded its timeout_s' END
FROM workflow_runs r
WHERE r.id = s.run_id AND r.id = ANY(:runs) AND r.status = 'RUNNING'
  AND (r.cancel_requested OR r.deadline_at < now())
  AND s.role = 'action' AND s.status IN ('PENDING', 'READY', 'RETRY_WAIT')
RETURNING s.run_id, s.step_id, s.map_index
"""
)

# Both statements below find the map steps concerned first and then touch only their children:
# a per-child correlated subquery made each recorded child cost O(children), O(n²) in all.
_CANCEL_SIBLINGS = text(
    f"""
WITH broken AS (
    SELECT DISTINCT run_id, step_id FROM step_runs
    WHERE run_id = ANY(:runs) AND role = 'action' AND map_index >= 0 AND status IN {_BROKEN}
)
UPDATE step_runs c SET status = 'CANCELLED', finished_at = now(),
    status_reason = 'another item of this map_over step failed'
FROM broken b
WHERE c.run_id = b.run_id AND c.step_id = b.step_id AND c.role = 'action' AND c.map_index >= 0
  AND c.status IN ('PENDING', 'READY', 'RETRY_WAIT')
RETURNING c.run_id, c.step_id, c.map_index
"""
)

# Per fanned-out step: how many children may still start, then that many PENDING children in
# item order (the unique index on (run_id, step_id, role, map_index) serves both lookups).
_OPEN_WINDOW = text(
    """
WITH parents AS (
    SELECT p.run_id, p.step_id,
           p.fanout_limit - (SELECT count(*) FROM step_runs x
                             WHERE x.run_id = p.run_id AND x.step_id = p.step_id
                               AND x.role = 'action' AND x.map_index >= 0
                               AND x.status IN ('READY', 'RUNNING', 'RETRY_WAIT')) AS free
    FROM step_runs p
    WHERE p.run_id = ANY(:runs) AND p.role = 'action' AND p.map_index = -1
      AND p.status = 'RUNNING' AND p.fanout_limit IS NOT NULL
), picked AS (
    SELECT ch.id FROM parents,
    LATERAL (SELECT c.id FROM step_runs c
             WHERE c.run_id = parents.run_id AND c.step_id = parents.step_id
               AND c.role = 'action' AND c.map_index >= 0 AND c.status = 'PENDING'
             ORDER BY c.map_index LIMIT greatest(parents.free, 0)) ch
)
UPDATE step_runs c SET status = 'READY', ready_at = now(),
    affinity = coalesce(CAST(:owner AS text), c.affinity)
FROM picked WHERE c.id = picked.id
"""
)

_FINISH_MAP_PARENTS = text(
    f"""
WITH agg AS (
    SELECT run_id, step_id,
           count(*) FILTER (WHERE status NOT IN {_TERMINAL}) AS open,
           count(*) FILTER (WHERE status IN ('FAILED', 'TIMED_OUT')) AS failed,
           count(*) FILTER (WHERE status IN ('CANCELLED', 'SKIPPED')) AS cancelled,
           count(*) AS total,
           jsonb_agg(output ORDER BY map_index) AS outputs,
           (array_agg(error ORDER BY map_index) FILTER (WHERE status IN ('FAILED', 'TIMED_OUT')))[1]
               AS first_error
    FROM step_runs
    WHERE run_id = ANY(:runs) AND role = 'action' AND map_index >= 0
    GROUP BY run_id, step_id
)
UPDATE step_runs p SET
    status = CASE WHEN agg.failed > 0 THEN 'FAILED' WHEN agg.cancelled > 0 THEN 'CANCELLED'
                  ELSE 'SUCCEEDED' END,
    output = CASE WHEN agg.failed = 0 AND agg.cancelled = 0 THEN agg.outputs END,
    error = agg.first_error,
    status_reason = CASE WHEN agg.failed > 0
                         THEN agg.failed || ' of ' || agg.total || ' items failed'
                         WHEN agg.cancelled > 0 THEN agg.cancelled || ' items cancelled' END,
    finished_at = now()
FROM agg
WHERE p.run_id = agg.run_id AND p.step_id = agg.step_id AND p.role = 'action'
  AND p.map_index = -1 AND p.status = 'RUNNING' AND p.lease_owner IS NULL AND agg.open = 0
RETURNING p.run_id, p.step_id, p.status, agg.total
"""
)

_SKIP_DOWNSTREAM = text(
    f"""
UPDATE step_runs p SET status = 'SKIPPED', finished_at = now(),
    status_reason = 'upstream step did not succeed'
WHERE p.run_id = ANY(:runs) AND p.role = 'action' AND p.map_index = -1 AND p.status = 'PENDING'
  AND EXISTS (SELECT 1 FROM step_runs d WHERE d.run_id = p.run_id AND d.role = 'action'
              AND d.map_index = -1 AND d.step_id = ANY(p.depends_on) AND d.status IN {_BROKEN})
RETURNING p.run_id, p.step_id
"""
)

# An action waits for its dependencies to succeed; a compensation waits for the compensations
# of the steps downstream of it to end in any way (saga: undo in reverse order, best effort).
_PROMOTE = text(
    f"""
UPDATE step_runs p SET status = 'READY', ready_at = now(),
    affinity = coalesce(CAST(:owner AS text), p.affinity)
FROM workflow_runs r
WHERE r.id = p.run_id AND p.run_id = ANY(:runs) AND p.map_index = -1 AND p.status = 'PENDING'
  AND ((p.role = 'action' AND r.status = 'RUNNING' AND NOT r.cancel_requested)
       OR (p.role = 'compensation' AND r.status = 'COMPENSATING'))
  AND NOT EXISTS (
      SELECT 1 FROM step_runs d
      WHERE d.run_id = p.run_id AND d.role = p.role AND d.map_index = -1
        AND d.step_id = ANY(p.depends_on)
        AND ((p.role = 'action' AND d.status <> 'SUCCEEDED')
             OR (p.role = 'compensation' AND d.status NOT IN {_TERMINAL})))
RETURNING p.run_id, p.step_id, p.role
"""
)

_MARK_COMPENSATED = text(
    """
UPDATE step_runs a SET status = 'COMPENSATED'
FROM step_runs c
WHERE a.run_id = ANY(:runs) AND c.run_id = a.run_id AND c.step_id = a.step_id
  AND c.role = 'compensation' AND c.status = 'SUCCEEDED'
  AND a.role = 'action' AND a.map_index = -1 AND a.status = 'SUCCEEDED'
RETURNING a.run_id, a.step_id
"""
)

_RUN_SUMMARY = text(
    f"""
SELECT r.id, r.status, r.kind, r.cancel_requested, r.status_reason, r.started_at,
       (r.deadline_at IS NOT NULL AND r.deadline_at < now()) AS past_deadline,
       count(s.id) FILTER (WHERE s.role = 'action' AND s.status NOT IN {_TERMINAL}) AS open_actions,
       count(s.id) FILTER (WHERE s.role = 'action' AND s.map_index = -1
                           AND s.status <> 'SUCCEEDED') AS unsuccessful,
       count(s.id) FILTER (WHERE s.role = 'compensation'
                           AND s.status NOT IN {_TERMINAL}) AS open_compensations,
       count(s.id) FILTER (WHERE s.role = 'compensation'
                           AND s.status <> 'SUCCEEDED') AS failed_compensations
FROM workflow_runs r LEFT JOIN step_runs s ON s.run_id = r.id
WHERE r.id = ANY(:runs) AND r.status IN ('RUNNING', 'COMPENSATING')
GROUP BY r.id
"""
)

_FIRST_FAILURE = text(
    """
SELECT step_id, status, error, status_reason FROM step_runs
WHERE run_id = :run AND role = 'action' AND map_index = -1 AND status IN ('FAILED', 'TIMED_OUT')
ORDER BY finished_at LIMIT 1
"""
)


async def advance_runs(
    session: AsyncSession,
    locked: LockedRuns,
    *,
    schema: str | None,
    owner: str | None = None,
    touched_map: bool = True,
    maybe_broken: bool = True,
    events: list[Event] | None = None,
) -> list[RunChange]:
    """Bring the locked runs up to date; return the runs that reached a new run status.

    `touched_map` and `maybe_broken` (some step failed) let the common case skip statements
    that could not change anything. `events` already gathered are written with these.
    `owner`, the engine advancing the runs, becomes the affinity of the steps made ready.
    """
    runs = {"runs": locked.ids}
    events = events if events is not None else []

    def step_events(rows: Any, status: StepStatus, **extra: Any) -> None:
        for row in rows:
            data: dict[str, Any] = {"step_id": row.step_id, **extra}
            if getattr(row, "map_index", -1) >= 0:
                data["map_index"] = row.map_index
            events.append(Event(STEP_EVENT[status], row.run_id, data))

    if locked.stopping:
        step_events(await session.execute(_STOP_OPEN_STEPS, runs), StepStatus.CANCELLED)
        maybe_broken = True
    if touched_map:
        step_events(await session.execute(_CANCEL_SIBLINGS, runs), StepStatus.CANCELLED)
        await session.execute(_OPEN_WINDOW, {**runs, "owner": owner})
        for row in await session.execute(_FINISH_MAP_PARENTS, runs):
            events.append(
                Event(
                    STEP_EVENT[StepStatus(row.status)],
                    row.run_id,
                    {"step_id": row.step_id, "items": row.total},
                )
            )
    while maybe_broken or touched_map:
        skipped = (await session.execute(_SKIP_DOWNSTREAM, runs)).all()
        step_events(skipped, StepStatus.SKIPPED)
        if not skipped:
            break
    promoted = (await session.execute(_PROMOTE, {**runs, "owner": owner})).all()
    if locked.compensating:
        step_events(await session.execute(_MARK_COMPENSATED, runs), StepStatus.COMPENSATED)

    changed: list[RunChange] = []
    endings = _RunEndings()
    now = datetime.now(UTC)
    for summary in (await session.execute(_RUN_SUMMARY, runs)).all():
        new_status = await _settle_run(session, summary, events, endings, owner)
        if new_status is not None:
            started = summary.started_at
            duration = (now - started).total_seconds() if started else None
            changed.append(RunChange(summary.id, new_status, summary.kind, duration))
    await endings.write(session)
    # Newly READY steps (or compensations created just now) need an engine: wake them.
    await emit(
        session,
        events,
        schema=schema,
        wake=(owner or "steps") if promoted or changed or touched_map else None,
    )
    return changed


async def _settle_run(
    session: AsyncSession,
    summary: Any,
    events: list[Event],
    endings: _RunEndings,
    owner: str | None,
) -> RunStatus | None:
    status = RunStatus(summary.status)
    if status == RunStatus.COMPENSATING:
        if summary.open_compensations:
            return None
        final = (
            RunStatus.COMPENSATED
            if summary.failed_compensations == 0
            else RunStatus.COMPENSATION_FAILED
        )
        endings.add(summary.id, final, summary.status_reason, events)
        return final
    if summary.open_actions:
        return None
    if summary.unsuccessful == 0 and not summary.cancel_requested:
        endings.add(summary.id, RunStatus.SUCCEEDED, None, events)
        return RunStatus.SUCCEEDED
    failed_step = error = None
    if summary.cancel_requested:
        outcome, reason = RunStatus.CANCELLED, summary.status_reason or "cancelled"
    elif summary.past_deadline:
        outcome, reason = RunStatus.FAILED, "run exceeded its timeout_s"
        error = reason
    else:
        failure = (await session.execute(_FIRST_FAILURE, {"run": summary.id})).first()
        outcome = RunStatus.FAILED
        failed_step = failure.step_id if failure else None
        detail = (failure.error or {}).get("message") if failure and failure.error else None
        error = f"step {failed_step} {failure.status.lower()}: {detail}" if failure else None
        reason = error or "a step did not succeed"
    if await _start_compensation(session, summary.id, reason, owner):
        endings.add(summary.id, RunStatus.COMPENSATING, reason, events, failed_step, error)
        return RunStatus.COMPENSATING
    endings.add(summary.id, outcome, reason, events, failed_step, error)
    return outcome


async def _start_compensation(
    session: AsyncSession, run_id: uuid.UUID, reason: str, owner: str | None
) -> bool:
    """Create compensation rows for succeeded steps that declare `compensate`."""
    spec_json = (
        await session.execute(text("SELECT spec FROM workflow_runs WHERE id = :id"), {"id": run_id})
    ).scalar_one()
    spec = WorkflowSpec.model_validate(spec_json)
    if not any(step.compensate for step in spec.steps):
        return False
    succeeded = {
        row.step_id
        for row in await session.execute(
            text(
                "SELECT step_id FROM step_runs WHERE run_id = :id AND role = 'action' "
                "AND map_index = -1 AND status = 'SUCCEEDED'"
            ),
            {"id": run_id},
        )
    }
    to_undo = [s for s in spec.steps if s.compensate and s.id in succeeded]
    if not to_undo:
        return False
    ancestors = upstream_of({s.id: list(s.depends_on) for s in spec.steps})
    undo_ids = {s.id for s in to_undo}
    for step in to_undo:
        assert step.compensate is not None
        # Undo `step` only after everything built on it has been undone.
        after = sorted(d for d in undo_ids if step.id in ancestors[d])
        await session.execute(
            text(
                "INSERT INTO step_runs (run_id, step_id, role, map_index, agent, action, "
                "depends_on, status, attempts, max_attempts, ready_at, attempt_log, affinity) "
                "VALUES (:run, :step, 'compensation', -1, :agent, :action, :deps, :status, 0, "
                ":max, CASE WHEN :ready THEN now() END, '[]'::jsonb, :owner) "
                "ON CONFLICT ON CONSTRAINT uq_step_runs_identity DO NOTHING"
            ),
            {
                "run": run_id,
                "step": step.id,
                "agent": step.agent,
                "action": step.compensate.action,
                "deps": after,
                "status": StepStatus.PENDING if after else StepStatus.READY,
                "ready": not after,
                "max": step.retry.max_attempts,
                "owner": owner,
            },
        )
    return True


@dataclass
class _RunEndings:
    """Run status changes gathered while settling, written in one statement."""

    ids: list[uuid.UUID] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    failed_steps: list[str | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    def add(
        self,
        run_id: uuid.UUID,
        status: RunStatus,
        reason: str | None,
        events: list[Event],
        failed_step: str | None = None,
        error: str | None = None,
    ) -> None:
        self.ids.append(run_id)
        self.statuses.append(status.value)
        self.reasons.append(reason)
        self.failed_steps.append(failed_step)
        self.errors.append(error)
        data: dict[str, Any] = {"status": status.value, "at": datetime.now(UTC).isoformat()}
        if reason:
            data["reason"] = reason
        if failed_step:
            data["failed_step"] = failed_step
        events.append(Event(RUN_EVENT[status], run_id, data))

    async def write(self, session: AsyncSession) -> None:
        if self.ids:
            await session.execute(
                _SET_RUN_STATUSES,
                {
                    "ids": self.ids,
                    "statuses": self.statuses,
                    "reasons": self.reasons,
                    "failed_steps": self.failed_steps,
                    "errors": self.errors,
                },
            )


_SET_RUN_STATUSES = text(
    """
UPDATE workflow_runs r SET status = v.status, status_reason = v.reason,
    failed_step = coalesce(v.failed_step, r.failed_step), error = coalesce(v.error, r.error),
    finished_at = CASE WHEN v.status IN ('RUNNING', 'COMPENSATING') THEN r.finished_at
                       ELSE now() END
FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]),
            CAST(:failed_steps AS text[]), CAST(:errors AS text[]))
     AS v(id, status, reason, failed_step, error)
WHERE r.id = v.id
"""
)
