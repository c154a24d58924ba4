"""Moving runs forward after step changes: stopping, fan-out (fanout.py), skips, readiness, saga
(compensation.py) and run endings (endings.py). Callers hold the runs' locks (`lock_runs`) so
that two steps of one run finishing at once cannot both miss making their common dependent
READY."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event, emit
from shared.state.compensation import mark_compensated
from shared.state.endings import RunChange, settle_runs
from shared.state.fanout import advance_maps
from shared.state.machine import BROKEN_STEP, TERMINAL_STEP, sql_list
from shared.state.transitions import PROMOTE, SKIP, STOP, step_events

__all__ = ["RunChange", "LockedRuns", "advance_runs", "lock_runs", "stop_waiting_steps"]

_TERMINAL = sql_list(TERMINAL_STEP)
_BROKEN = sql_list(BROKEN_STEP)

# A run being stopped (over the alias `r`): cancelled, or past its deadline. Its waiting action
# steps only ever become CANCELLED, STOP_BATCH per statement; claims refuse them meanwhile.
STOPPING_RUN = "(r.cancel_requested OR coalesce(r.deadline_at < now(), false))"
# Most steps one statement cancels: stopping a 100,000-item fan-out is a series of short
# transactions (shared/state/stopping.py), not one long one holding the run.
STOP_BATCH = 1000
# The advisory locks serialising the advancing of each run (beside the relay's 72002).
RUN_LOCK_ID = 72003


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
                        WHERE s.run_id = r.id AND s.role = 'action' AND {STOP.sql("s.status")}
                        LIMIT :limit) w
    WHERE r.id = ANY(:runs) AND r.status = 'RUNNING' AND {STOPPING_RUN}
    LIMIT :limit
)
UPDATE step_runs s SET status = '{STOP.to}', finished_at = now(),
    status_reason = CASE WHEN picked.cancel_requested THEN picked.status_reason
                         ELSE 'run exceeded its timeout_s' END
FROM picked
WHERE s.id = picked.id AND {STOP.sql("s.status")}
RETURNING s.run_id, s.step_id, s.role, s.map_index, s.status
"""
)


async def stop_waiting_steps(
    session: AsyncSession, run_ids: list[uuid.UUID], *, limit: int
) -> list[Event]:
    """Cancel up to `limit` waiting action steps of these runs that are stopping; their events."""
    rows = await session.execute(_STOP_WAITING_STEPS, {"runs": run_ids, "limit": limit})
    return step_events(STOP, rows)


_SKIP_DOWNSTREAM = text(
    f"""
UPDATE step_runs p SET status = '{SKIP.to}', finished_at = now(),
    status_reason = 'upstream step did not succeed'
WHERE p.run_id = ANY(:live) AND p.role = 'action' AND p.map_index = -1 AND {SKIP.sql("p.status")}
  AND EXISTS (SELECT 1 FROM step_runs d WHERE d.run_id = p.run_id AND d.role = 'action'
              AND d.map_index = -1 AND d.step_id = ANY(p.depends_on) AND d.status IN {_BROKEN})
RETURNING p.run_id, p.step_id, p.role, p.map_index, p.status
"""
)

# An action waits for its dependencies to succeed; a compensation waits for the compensations
# of the steps downstream of it to end in any way (saga: undo in reverse order, best effort).
_PROMOTE = text(
    f"""
UPDATE step_runs p SET status = '{PROMOTE.to}', ready_at = now(),
    affinity = coalesce(CAST(:owner AS text), p.affinity)
FROM workflow_runs r
WHERE r.id = p.run_id AND p.run_id = ANY(:runs) AND p.map_index = -1 AND {PROMOTE.sql("p.status")}
  AND ((p.role = 'action' AND r.status = 'RUNNING' AND NOT {STOPPING_RUN})
       OR (p.role = 'compensation' AND r.status = 'COMPENSATING'))
  AND NOT EXISTS (
      SELECT 1 FROM step_runs d
      WHERE d.run_id = p.run_id AND d.role = p.role AND d.map_index = -1
        AND d.step_id = ANY(p.depends_on)
        AND ((p.role = 'action' AND d.status <> 'SUCCEEDED')
             OR (p.role = 'compensation' AND d.status NOT IN {_TERMINAL})))
RETURNING p.run_id, p.step_id, p.role, p.map_index, p.status
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
    if locked.stopping:
        events += await stop_waiting_steps(session, locked.ids, limit=stop_limit)
        maybe_broken = True
    if touched_map:
        events += await advance_maps(session, runs, owner=owner)
    while maybe_broken or touched_map:
        skipped = step_events(SKIP, await session.execute(_SKIP_DOWNSTREAM, runs))
        events += skipped
        if not skipped:
            break
    promoted = step_events(PROMOTE, await session.execute(_PROMOTE, {**runs, "owner": owner}))
    events += promoted
    if locked.compensating:
        events += await mark_compensated(session, locked.ids)
    changed = await settle_runs(session, locked.ids, events, owner=owner)
    # Newly READY steps (or compensations created just now) need an engine: wake them.
    await emit(
        session,
        events,
        schema=schema,
        wake=(owner or "steps") if promoted or changed or touched_map else None,
    )
    return changed
