"""Saga compensation: when a run fails or is cancelled, undo its succeeded steps that declare
`compensate`, in reverse dependency order (endings.py decides when)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event
from shared.spec.models import WorkflowSpec
from shared.spec.validation import upstream_of
from shared.state.needs import needs_column, step_needs
from shared.state.transitions import COMPENSATE, CREATE_COMPENSATION, step_events

# An action whose compensation succeeded is COMPENSATED.
_MARK_COMPENSATED = text(
    f"""
UPDATE step_runs a SET status = '{COMPENSATE.to}'
FROM step_runs c
WHERE a.run_id = ANY(:runs) AND c.run_id = a.run_id AND c.step_id = a.step_id
  AND c.role = 'compensation' AND c.status = 'SUCCEEDED'
  AND a.role = 'action' AND a.map_index = -1 AND {COMPENSATE.sql("a.status")}
RETURNING a.run_id, a.step_id, a.role, a.map_index, a.status
"""
)

_SUCCEEDED = text(
    "SELECT r.spec, s.step_id FROM workflow_runs r LEFT JOIN step_runs s ON s.run_id = r.id "
    "AND s.role = 'action' AND s.map_index = -1 AND s.status = 'SUCCEEDED' WHERE r.id = :id"
)

# One row per step to undo; `depends_on` and `needs` travel comma-joined (step ids have no
# commas; '' is an empty array, NULL stays NULL).
_INSERT_COMPENSATIONS = text(
    """
INSERT INTO step_runs (run_id, step_id, role, map_index, agent, action, depends_on, status,
                       attempts, max_attempts, ready_at, attempt_log, affinity, needs)
SELECT :run, v.step_id, 'compensation', -1, v.agent, v.action,
       CAST(string_to_array(v.deps, ',') AS varchar[]),
       CASE WHEN v.deps = '' THEN 'READY' ELSE 'PENDING' END, 0, v.max_attempts,
       CASE WHEN v.deps = '' THEN now() END, '[]'::jsonb, :owner,
       CAST(string_to_array(v.needs, ',') AS varchar[])
FROM unnest(CAST(:step_ids AS text[]), CAST(:agents AS text[]), CAST(:actions AS text[]),
            CAST(:deps AS text[]), CAST(:max_attempts AS int[]), CAST(:needs AS text[]))
     AS v(step_id, agent, action, deps, max_attempts, needs)
ON CONFLICT ON CONSTRAINT uq_step_runs_identity DO NOTHING
RETURNING run_id, step_id, role, map_index, status
"""
)


async def start_compensation(
    session: AsyncSession, run_id: uuid.UUID, owner: str | None, events: list[Event]
) -> bool:
    """Create compensation rows (one statement) for succeeded steps that declare `compensate`;
    False when there is nothing to undo."""
    rows = (await session.execute(_SUCCEEDED, {"id": run_id})).all()
    spec = WorkflowSpec.model_validate(rows[0].spec)
    succeeded = {row.step_id for row in rows if row.step_id is not None}
    to_undo = [s for s in spec.steps if s.compensate and s.id in succeeded]
    if not to_undo:
        return False
    ancestors = upstream_of({s.id: list(s.depends_on) for s in spec.steps})
    undo_ids = {s.id for s in to_undo}
    columns: dict[str, list[object]] = {
        "step_ids": [],
        "agents": [],
        "actions": [],
        "deps": [],
        "max_attempts": [],
        "needs": [],
    }
    for step in to_undo:
        assert step.compensate is not None
        # Undo `step` only after everything built on it has been undone.
        after = sorted(d for d in undo_ids if step.id in ancestors[d])
        columns["step_ids"].append(step.id)
        columns["agents"].append(step.agent)
        columns["actions"].append(step.compensate.action)
        columns["deps"].append(",".join(after))
        columns["max_attempts"].append(step.retry.max_attempts)
        columns["needs"].append(needs_column(step_needs(step, "compensation")))
    inserted = await session.execute(
        _INSERT_COMPENSATIONS, {"run": run_id, "owner": owner, **columns}
    )
    events += step_events(CREATE_COMPENSATION, inserted)
    return True


async def mark_compensated(session: AsyncSession, run_ids: list[uuid.UUID]) -> list[Event]:
    """Actions whose compensation succeeded become COMPENSATED; their events."""
    return step_events(COMPENSATE, await session.execute(_MARK_COMPENSATED, {"runs": run_ids}))
