"""Admission waits: a PENDING run held back by a policy says why (`status_reason`) until the
policies admit it; an admitted run no engine started says so too. The status stays PENDING,
but each such change writes its event (`ingestion.workflow.waiting` / `.admitted`)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event, emit
from shared.state.machine import RunStatus
from shared.state.transitions import ADMIT, HOLD, NOTE_UNCLAIMED, Transition

_ADMIT = text(
    "UPDATE workflow_runs SET admitted_at = now(), status_reason = NULL "
    f"WHERE id = ANY(:ids) AND {ADMIT.sql()} AND admitted_at IS NULL RETURNING id"
)

_HOLD = text(
    "UPDATE workflow_runs r SET status_reason = v.reason "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS v(id, reason) "
    f"WHERE r.id = v.id AND {HOLD.sql('r.status')} AND r.admitted_at IS NULL "
    "AND r.status_reason IS DISTINCT FROM v.reason RETURNING r.id, r.status_reason"
)

_NOTE_UNCLAIMED = text(
    "UPDATE workflow_runs SET status_reason = :reason "
    f"WHERE {NOTE_UNCLAIMED.sql()} AND admitted_at IS NOT NULL "
    "AND admitted_at < now() - make_interval(secs => :after_s) "
    "AND status_reason IS DISTINCT FROM :reason RETURNING id, status_reason"
)


def _events(transition: Transition, rows: object, with_reason: bool = True) -> list[Event]:
    event = transition.event_for(RunStatus.PENDING) or ""
    return [
        Event(event, row.id, {"reason": row.status_reason} if with_reason else {})
        for row in rows  # type: ignore[attr-defined]
    ]


async def admit_runs(
    session: AsyncSession, run_ids: list[uuid.UUID], *, schema: str | None
) -> None:
    """Let PENDING runs held back by a policy be started by an engine."""
    if run_ids:
        rows = await session.execute(_ADMIT, {"ids": run_ids})
        await emit(session, _events(ADMIT, rows, with_reason=False), schema=schema, wake="runs")


async def hold_runs(
    session: AsyncSession, held: dict[uuid.UUID, str], *, schema: str | None
) -> None:
    """Record why held runs still wait (only where the reason changed)."""
    if held:
        params = {"ids": list(held), "reasons": list(held.values())}
        rows = await session.execute(_HOLD, params)
        await emit(session, _events(HOLD, rows), schema=schema)


async def note_unclaimed(
    session: AsyncSession, *, after_s: float, reason: str, schema: str | None
) -> int:
    """Say in `status_reason` why admitted runs are still PENDING after `after_s` (no engine
    started them); starting a run clears it."""
    rows = (await session.execute(_NOTE_UNCLAIMED, {"after_s": after_s, "reason": reason})).all()
    await emit(session, _events(NOTE_UNCLAIMED, rows), schema=schema)
    return len(rows)
