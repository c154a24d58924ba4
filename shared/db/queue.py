"""The queue behind `workflow_queue_size`, counted one way for every service that exports it.

The engine and the controller both export the gauge (dashboards and the engine's autoscaler take
`max` over replicas), so both must count the same work: steps ready to run, retries whose time
has come, admitted runs no engine has started (together the engines' backlog), and runs still
waiting for admission.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_COUNTS = text(
    """
SELECT (SELECT count(*) FROM step_runs
        WHERE status = 'READY'
           OR (status = 'RETRY_WAIT' AND (next_attempt_at IS NULL OR next_attempt_at <= now())))
       AS steps,
       (SELECT count(*) FROM workflow_runs WHERE status = 'PENDING' AND admitted_at IS NOT NULL)
       AS admitted,
       (SELECT count(*) FROM workflow_runs WHERE status = 'PENDING' AND admitted_at IS NULL)
       AS waiting
"""
)


@dataclass(frozen=True)
class QueueSizes:
    steps: int  # READY, or RETRY_WAIT and due
    admitted: int  # admitted runs not started yet
    waiting: int  # runs a policy holds back

    @property
    def backlog(self) -> int:
        """Work handed to the engines and not begun (`workflow_engine_backlog`)."""
        return self.steps + self.admitted

    @property
    def queued(self) -> int:
        """Everything waiting to run (`workflow_queue_size`)."""
        return self.backlog + self.waiting


async def queue_sizes(session: AsyncSession) -> QueueSizes:
    """Count the queue in the session's schema, in one statement."""
    row = (await session.execute(_COUNTS)).one()
    return QueueSizes(steps=int(row.steps), admitted=int(row.admitted), waiting=int(row.waiting))
