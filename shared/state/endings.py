"""Run endings: which locked runs have nothing left to do and how each ends (succeeded,
failed, cancelled, compensating, compensated), written for all of them in one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event
from shared.state.compensation import start_compensation
from shared.state.machine import TERMINAL_STEP, RunStatus, sql_list
from shared.state.transitions import END, END_COMPENSATION

_TERMINAL = sql_list(TERMINAL_STEP)
_ENDINGS = (END, END_COMPENSATION)
_SETTLING = frozenset(s for t in _ENDINGS for s in t.sources if s is not None)


@dataclass(frozen=True)
class RunChange:
    """A run that reached a new status in this transaction."""

    run_id: uuid.UUID
    status: RunStatus
    kind: str
    duration_s: float | None


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
        failed_step: str | None = None,
        error: str | None = None,
    ) -> None:
        self.ids.append(run_id)
        self.statuses.append(status.value)
        self.reasons.append(reason)
        self.failed_steps.append(failed_step)
        self.errors.append(error)

    async def write(self, session: AsyncSession, events: list[Event]) -> set[uuid.UUID]:
        """Set the statuses (each only along a transition of the table) and add an event per
        run changed; return the runs changed."""
        if not self.ids:
            return set()
        rows = await session.execute(
            _SET_RUN_STATUSES,
            {
                "ids": self.ids,
                "statuses": self.statuses,
                "reasons": self.reasons,
                "failed_steps": self.failed_steps,
                "errors": self.errors,
                "pair_from": [s for t in _ENDINGS for s in t.guard for _ in t.targets],
                "pair_to": [x.value for t in _ENDINGS for _ in t.guard for x in t.targets],
            },
        )
        now = datetime.now(UTC).isoformat()
        changed = set()
        for row in rows:
            changed.add(row.id)
            status = RunStatus(row.status)
            data: dict[str, Any] = {"status": status.value, "at": now}
            if row.status_reason:
                data["reason"] = row.status_reason
            if row.failed_step:
                data["failed_step"] = row.failed_step
            transition = END if status in END.targets else END_COMPENSATION
            events.append(Event(transition.event_for(status) or "", row.id, data))
        return changed


# The (from, to) pairs the table allows arrive as two arrays: a row moves only along one.
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
  AND (r.status, v.status) IN (SELECT * FROM unnest(CAST(:pair_from AS text[]),
                                                    CAST(:pair_to AS text[])))
RETURNING r.id, r.status, r.status_reason, v.failed_step
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
WHERE r.id = ANY(:runs) AND r.status IN {sql_list(_SETTLING)}
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


async def settle_runs(
    session: AsyncSession, run_ids: list[uuid.UUID], events: list[Event], *, owner: str | None
) -> list[RunChange]:
    """End the runs (locked by the caller) that have nothing left to do; their events go to
    `events`. Returns the runs that reached a new status."""
    endings = RunEndings()
    summaries = {}
    for summary in (await session.execute(_RUN_SUMMARY, {"runs": run_ids})).all():
        new_status = await _settle_run(session, summary, events, endings, owner)
        if new_status is not None:
            summaries[summary.id] = (summary, new_status)
    changed = await endings.write(session, events)
    now = datetime.now(UTC)
    result = []
    for run_id, (summary, new_status) in summaries.items():
        if run_id in changed:
            started = summary.started_at
            duration = (now - started).total_seconds() if started else None
            result.append(RunChange(run_id, new_status, summary.kind, duration))
    return result


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
        endings.add(summary.id, final, summary.status_reason)
        return final
    if summary.open_actions:
        return None
    if summary.unsuccessful == 0 and not summary.cancel_requested:
        endings.add(summary.id, RunStatus.SUCCEEDED, None)
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
    if await start_compensation(session, summary.id, owner, events):
        endings.add(summary.id, RunStatus.COMPENSATING, reason, failed_step, error)
        return RunStatus.COMPENSATING
    endings.add(summary.id, outcome, reason, failed_step, error)
    return outcome
