"""Moving runs forward after step changes: fan-out windows, skips, readiness, run endings and
saga compensation. Callers hold the runs' locks (`lock_runs`) so that two steps of one run
finishing at once cannot both miss making their common dependent READY."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event, emit
from shared.state.compensation import MARK_COMPENSATED, start_compensation
from shared.state.endings import RunEndings
from shared.state.machine import STEP_EVENT, RunStatus, StepStatus

_TERMINAL = "('SUCCEEDED','FAILED','TIMED_OUT','SKIPPED','CANCELLED','COMPENSATED')"
_BROKEN = "('FAILED','TIMED_OUT','SKIPPED','CANCELLED')"
_WAITING = "('PENDING','READY','RETRY_WAIT')"  # open, and not in an engine's hands

# A run being stopped (over the alias `r`): cancelled, or past its deadline. Its waiting action
# steps only ever become CANCELLED, STOP_BATCH per statement; claims refuse them meanwhile.
STOPPING_RUN = "(r.cancel_requested OR coalesce(r.deadline_at < now(), false))"
# Most steps one statement cancels: stopping a 100,000-item fan-out is a series of short
# transactions (shared/state/stopping.py), not one long one holding the run.
STOP_BATCH = 1000
# The advisory locks serialising the advancing of each run (beside the relay's 72002).
RUN_LOCK_ID = 72003


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
    # The runs not stopping: a stopping run's waiting steps are only ever CANCELLED, in
    # batches, not moved by sibling cancellation, windows or skips meanwhile (so they end
    # exactly as when one statement cancelled them all).
    live: list[uuid.UUID]
    compensating: bool  # some run is undoing its steps


# Keys in a fixed order, so concurrent batches cannot deadlock. An advisory lock rather than
# the run row's: a cancel request writes the row without waiting for advancing that holds a
# large run for a while. The read comes after, in a statement of its own (a fresh snapshot).
_LOCK_RUNS = text(
    "SELECT pg_advisory_xact_lock(:lock_id, k) FROM (SELECT DISTINCT hashtext(CAST(id AS text)) "
    "AS k FROM unnest(CAST(:ids AS uuid[])) AS id ORDER BY k) AS keys"
)
_READ_LOCKED = text(
    f"SELECT id, status, {STOPPING_RUN} AS stopping FROM workflow_runs r "
    "WHERE id = ANY(:ids) ORDER BY id"
)


def run_lock_key(run_id: str) -> str:
    """The SQL expression of a run's advisory lock arguments (for a try-lock elsewhere)."""
    return f"{RUN_LOCK_ID}, hashtext(CAST({run_id} AS text))"


async def lock_runs(session: AsyncSession, run_ids: Sequence[uuid.UUID]) -> LockedRuns:
    """Take the runs' advancing locks (held to the end of the transaction) and read them."""
    ids = sorted(set(run_ids))
    await session.execute(_LOCK_RUNS, {"lock_id": RUN_LOCK_ID, "ids": ids})
    rows = (await session.execute(_READ_LOCKED, {"ids": ids})).all()
    stopping = {row.id for row in rows if row.stopping and row.status == "RUNNING"}
    return LockedRuns(
        ids=[row.id for row in rows],
        stopping=bool(stopping),
        compensating=any(row.status == "COMPENSATING" for row in rows),
        live=[row.id for row in rows if row.id not in stopping],
    )


# LATERAL: run by run, each one's waiting steps through ix_step_runs_waiting (a planner
# without statistics may otherwise scan every waiting step per run, or the reverse).
_STOP_WAITING_STEPS = text(
    f"""
WITH picked AS MATERIALIZED (
    SELECT w.id, r.cancel_requested, r.status_reason FROM workflow_runs r
    CROSS JOIN LATERAL (SELECT s.id FROM step_runs s
                        WHERE s.run_id = r.id AND s.role = 'action' AND s.status IN {_WAITING}
                        LIMIT :limit) w
    WHERE r.id = ANY(:runs) AND r.status = 'RUNNING' AND {STOPPING_RUN}
    LIMIT :limit
)
UPDATE step_runs s SET status = 'CANCELLED', finished_at = now(),
    status_reason = CASE WHEN picked.cancel_requested THEN picked.status_reason
                         ELSE 'run exceeded its timeout_s' END
FROM picked
WHERE s.id = picked.id AND s.status IN {_WAITING}
RETURNING s.run_id, s.step_id, s.map_index
"""
)


async def stop_waiting_steps(
    session: AsyncSession, run_ids: list[uuid.UUID], *, limit: int
) -> list[Event]:
    """Cancel up to `limit` waiting action steps of these runs that are stopping; their events."""
    rows = await session.execute(_STOP_WAITING_STEPS, {"runs": run_ids, "limit": limit})
    return [Event(STEP_EVENT[StepStatus.CANCELLED], row.run_id, _step_data(row)) for row in rows]


def _step_data(row: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"step_id": row.step_id}
    if getattr(row, "map_index", -1) >= 0:
        data["map_index"] = row.map_index
    return data


# Both statements below find the map steps concerned first and then touch only their children:
# a per-child correlated subquery made each recorded child cost O(children), O(n²) in all.
# MATERIALIZED: without statistics the planner may otherwise rerun `broken` per waiting child.
_CANCEL_SIBLINGS = text(
    f"""
WITH broken AS MATERIALIZED (
    SELECT DISTINCT run_id, step_id FROM step_runs
    WHERE run_id = ANY(:live) AND role = 'action' AND map_index >= 0 AND status IN {_BROKEN}
)
UPDATE step_runs c SET status = 'CANCELLED', finished_at = now(),
    status_reason = 'another item of this map_over step failed'
FROM broken b
WHERE c.run_id = ANY(:live) AND c.run_id = b.run_id AND c.step_id = b.step_id
  AND c.role = 'action' AND c.map_index >= 0 AND c.status IN ('PENDING', 'READY', 'RETRY_WAIT')
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
    WHERE p.run_id = ANY(:live) AND p.role = 'action' AND p.map_index = -1
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
WHERE p.run_id = ANY(:live) AND p.role = 'action' AND p.map_index = -1 AND p.status = 'PENDING'
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
  AND ((p.role = 'action' AND r.status = 'RUNNING' AND NOT {STOPPING_RUN})
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
    stop_limit: int = STOP_BATCH,
) -> list[RunChange]:
    """Bring the locked runs up to date; return the runs that reached a new run status.

    `touched_map` and `maybe_broken` (some step failed) let the common case skip statements
    that could not change anything. `events` already gathered are written with these.
    `owner`, the engine advancing the runs, becomes the affinity of the steps made ready.
    Of stopping runs' waiting steps, at most `stop_limit` are cancelled; a run ends only once
    none is left (shared/state/stopping.py cancels the rest).
    """
    runs = {"runs": locked.ids, "live": locked.live}
    events = events if events is not None else []

    def step_events(rows: Any, status: StepStatus) -> None:
        events.extend(Event(STEP_EVENT[status], row.run_id, _step_data(row)) for row in rows)

    if locked.stopping:
        events += await stop_waiting_steps(session, locked.ids, limit=stop_limit)
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
        step_events(await session.execute(MARK_COMPENSATED, runs), StepStatus.COMPENSATED)

    changed: list[RunChange] = []
    endings = RunEndings()
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
    endings: RunEndings,
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
    if await start_compensation(session, summary.id, reason, owner):
        endings.add(summary.id, RunStatus.COMPENSATING, reason, events, failed_step, error)
        return RunStatus.COMPENSATING
    endings.add(summary.id, outcome, reason, events, failed_step, error)
    return outcome
