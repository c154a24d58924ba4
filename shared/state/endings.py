"""Run endings gathered while settling the runs of one advance, written in one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event
from shared.state.machine import RUN_EVENT, RunStatus


@dataclass
class RunEndings:
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
