"""Saga compensation: when a run fails or is cancelled, undo its succeeded steps that declare
`compensate`, in reverse dependency order (progress.py decides when)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.spec.models import WorkflowSpec
from shared.spec.validation import upstream_of
from shared.state.machine import StepStatus

# An action whose compensation succeeded is COMPENSATED.
MARK_COMPENSATED = text(
    """
UPDATE step_runs a SET status = 'COMPENSATED'
FROM step_runs c
WHERE a.run_id = ANY(:runs) AND c.run_id = a.run_id AND c.step_id = a.step_id
  AND c.role = 'compensation' AND c.status = 'SUCCEEDED'
  AND a.role = 'action' AND a.map_index = -1 AND a.status = 'SUCCEEDED'
RETURNING a.run_id, a.step_id
"""
)


async def start_compensation(
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
