"""Claims and results: claim steps with a lease, record attempts' results (leases: leases.py,
fan-out: fanout.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event, emit
from shared.state.endings import RunChange
from shared.state.fanout import expand
from shared.state.machine import StepStatus
from shared.state.progress import STOPPING_RUN, advance_runs, lock_runs
from shared.state.transitions import CLAIM, RECORD


@dataclass
class ClaimedStep:
    id: int
    run_id: uuid.UUID
    step_id: str
    role: str
    map_index: int
    agent: str
    action: str
    attempts: int
    max_attempts: int
    outputs: dict[str, Any]


@dataclass
class AttemptResult:
    """What one claimed attempt came to; `retry_in_s` set means try again after that delay."""

    step: ClaimedStep
    outcome: Literal["succeeded", "failed", "timed_out", "cancelled"]
    output: Any = None
    error: dict[str, Any] | None = None
    retry_in_s: float | None = None
    duration_ms: float = 0.0
    worker: str = ""
    # for a map_over parent: the list to fan out over (children are created instead of a call)
    map_items: list[Any] | None = field(default=None)
    fanout_limit: int = 1
    # an adaptive step's retry decision and the model version that made it (attempt log, event)
    decision: dict[str, Any] | None = None


# The outputs a claimed step's templates may read: its run's finished top-level actions.
_DONE_ACTION = "u.role = 'action' AND u.map_index = -1 AND u.status IN ('SUCCEEDED', 'COMPENSATED')"

# A stopping run's actions (cancelled, or past its deadline) never start again, even while
# they wait to be cancelled (shared/state/stopping.py); its compensations do run. A scalar
# subquery, one primary-key lookup per candidate: never a join that reads every run.
# Outputs: only those of the steps the row `needs` (shared/state/needs.py), each looked up by
# its whole identity key; none when it needs none; every one when `needs` is NULL (rows created
# before the column, or templates that do not tell). The per-id LATERAL ... LIMIT 1 (the key is
# unique) keeps the plan a lookup per id whatever the statistics say: with `= ANY(needs)` or a
# plain join, the planner took the run's every row, map items included, and filtered.
_CLAIM = text(
    f"""
WITH picked AS (
    SELECT id FROM step_runs w
    WHERE {CLAIM.sql()}
      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
      AND (affinity IS NULL OR affinity = :owner
           OR coalesce(next_attempt_at, ready_at) <= now() - make_interval(secs => :sticky_s))
      AND (role <> 'action'
           OR (SELECT {STOPPING_RUN} FROM workflow_runs r WHERE r.id = w.run_id) IS NOT TRUE)
    ORDER BY priority DESC, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE step_runs s
    SET status = '{CLAIM.to}', lease_owner = :owner,
        lease_expires_at = now() + make_interval(secs => :lease_s),
        attempts = s.attempts + 1, started_at = coalesce(s.started_at, now()),
        attempt_started_at = now(), next_attempt_at = NULL, status_reason = NULL
    FROM picked WHERE s.id = picked.id AND {CLAIM.sql("s.status")}
    RETURNING s.id, s.run_id, s.step_id, s.role, s.map_index, s.agent, s.action,
              s.attempts, s.max_attempts, s.fanout_limit, s.needs
)
SELECT c.id, c.run_id, c.step_id, c.role, c.map_index, c.agent, c.action, c.attempts,
       c.max_attempts, c.fanout_limit,
       CASE WHEN c.needs IS NULL THEN
                (SELECT jsonb_object_agg(u.step_id, u.output) FROM step_runs u
                 WHERE u.run_id = c.run_id AND {_DONE_ACTION})
            WHEN cardinality(c.needs) > 0 THEN
                (SELECT jsonb_object_agg(n.step_id, u.output)
                 FROM unnest(c.needs) AS n(step_id),
                 LATERAL (SELECT u.output FROM step_runs u
                          WHERE u.run_id = c.run_id AND u.step_id = n.step_id AND {_DONE_ACTION}
                          LIMIT 1) u)
       END AS outputs
FROM claimed c
"""
)


async def claim_steps(
    session: AsyncSession,
    *,
    owner: str,
    limit: int,
    lease_s: float,
    schema: str | None,
    sticky_s: float = 0.0,
) -> list[ClaimedStep]:
    """Take up to `limit` runnable steps for `owner`, each with a lease of `lease_s`.

    Steps with another engine's affinity are taken only once they have waited `sticky_s`.
    """
    params = {"owner": owner, "limit": limit, "lease_s": lease_s, "sticky_s": sticky_s}
    rows = (await session.execute(_CLAIM, params)).all()
    claimed = [
        ClaimedStep(
            id=row.id,
            run_id=row.run_id,
            step_id=row.step_id,
            role=row.role,
            map_index=row.map_index,
            agent=row.agent,
            action=row.action,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            outputs=row.outputs or {},
        )
        for row in rows
    ]
    await emit(
        session,
        [
            Event(
                CLAIM.event_for(StepStatus.RUNNING) or "",
                c.run_id,
                _step_data(c, attempt=c.attempts, worker=owner),
            )
            for c in claimed
        ],
        schema=schema,
    )
    return claimed


def _step_data(step: ClaimedStep, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"step_id": step.step_id, "agent": step.agent, "action": step.action}
    if step.role != "action":
        data["role"] = step.role
    if step.map_index >= 0:
        data["map_index"] = step.map_index
    data.update(extra)
    return data


_FINISH_MANY = text(
    f"""
UPDATE step_runs s SET
    status = v.status, output = v.output, error = v.error, status_reason = v.reason,
    next_attempt_at = CASE WHEN v.retry_in_s IS NULL THEN NULL
                           ELSE now() + make_interval(secs => v.retry_in_s) END,
    finished_at = CASE WHEN v.retry_in_s IS NULL THEN now() END,
    lease_owner = NULL, lease_expires_at = NULL,
    attempt_log = s.attempt_log || v.log
FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:outputs AS jsonb[]),
            CAST(:errors AS jsonb[]), CAST(:reasons AS text[]), CAST(:retry AS float8[]),
            CAST(:logs AS jsonb[]), CAST(:owners AS text[]), CAST(:attempts AS int[]))
     AS v(id, status, output, error, reason, retry_in_s, log, owner, attempt)
WHERE s.id = v.id AND {RECORD.sql("s.status")} AND s.lease_owner = v.owner
  AND s.attempts = v.attempt
RETURNING s.id
"""
)


def _status_of(result: AttemptResult) -> StepStatus:
    if result.outcome == "succeeded":
        return StepStatus.SUCCEEDED
    if result.outcome == "cancelled":
        return StepStatus.CANCELLED
    if result.retry_in_s is not None:
        return StepStatus.RETRY_WAIT
    return StepStatus.TIMED_OUT if result.outcome == "timed_out" else StepStatus.FAILED


def _reason_of(result: AttemptResult, status: StepStatus) -> str | None:
    if not result.error or status == StepStatus.SUCCEEDED:
        return None
    reason = f"{result.error.get('code', 'error')}: {result.error.get('message', '')}"
    if status == StepStatus.RETRY_WAIT:
        reason = f"retrying in {result.retry_in_s:.2f}s after {reason}"
    return reason


async def record_results(
    session: AsyncSession,
    results: list[AttemptResult],
    *,
    schema: str | None,
    owner: str | None = None,
) -> list[RunChange]:
    """Apply a batch of attempt results in one transaction; return runs that changed status.

    A result whose lease was lost (another worker took the step over) changes nothing.
    Steps this makes ready get `owner` (the recording engine) as their affinity.
    """
    locked = await lock_runs(session, sorted({r.step.run_id for r in results}))
    events: list[Event] = []
    touched_map = False
    finished = []
    for result in results:
        if result.map_items is not None:
            touched_map = True
            await expand(session, result, events)
        else:
            touched_map = touched_map or result.step.map_index >= 0
            finished.append((result, _status_of(result)))
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "ids",
            "statuses",
            "outputs",
            "errors",
            "reasons",
            "retry",
            "logs",
            "owners",
            "attempts",
        )
    }
    for result, status in finished:
        step = result.step
        log_entry = {
            "attempt": step.attempts,
            "outcome": result.outcome,
            "duration_ms": round(result.duration_ms, 2),
            "worker": result.worker,
            "error": result.error,
        }
        if result.decision is not None:
            log_entry["decision"] = result.decision
        columns["ids"].append(step.id)
        columns["statuses"].append(status.value)
        columns["outputs"].append(
            json.dumps(result.output) if status == StepStatus.SUCCEEDED else None
        )
        columns["errors"].append(json.dumps(result.error) if result.error else None)
        columns["reasons"].append(_reason_of(result, status))
        columns["retry"].append(result.retry_in_s if status == StepStatus.RETRY_WAIT else None)
        columns["logs"].append(json.dumps([log_entry], default=str))
        columns["owners"].append(result.worker)
        columns["attempts"].append(step.attempts)
    applied: set[int] = set()
    if finished:
        applied = {row.id for row in await session.execute(_FINISH_MANY, columns)}
    for result, status in finished:
        step = result.step
        if step.id not in applied:
            continue  # lease lost: the step belongs to someone else now
        data = _step_data(step, attempt=step.attempts, duration_ms=round(result.duration_ms, 2))
        if result.error:
            data["error"] = result.error
        if status == StepStatus.RETRY_WAIT:
            data["retry_in_s"] = round(result.retry_in_s or 0.0, 3)
        if result.decision is not None:
            data["retry_decision"] = result.decision
        events.append(Event(RECORD.event_for(status) or "", step.run_id, data))
    maybe_broken = any(status != StepStatus.SUCCEEDED for _, status in finished)
    return await advance_runs(
        session,
        locked,
        schema=schema,
        owner=owner,
        touched_map=touched_map,
        maybe_broken=maybe_broken,
        events=events,
    )
