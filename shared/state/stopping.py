"""Finishing the stop of runs that were cancelled or ran past their deadline, batch by batch.

A cancel request only marks its run (`request_cancel`), so it answers at once however large the
fan-out; from then on no claim takes the run's action steps (`claim_steps`). The engines then
cancel the steps still waiting, `STOP_BATCH` per transaction with their events, and the run
ends as before (CANCELLED, FAILED past its deadline, or compensating) once its in-flight steps
have returned.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import WorkflowRun
from shared.errors import Conflict, NotFound
from shared.events.outbox import Event, emit
from shared.state.machine import RunStatus, sql_list
from shared.state.progress import (
    STOP_BATCH,
    STOPPING_RUN,
    RunChange,
    advance_runs,
    lock_runs,
    run_lock_key,
    stop_waiting_steps,
)
from shared.state.transitions import CANCEL_PENDING, REQUEST_CANCEL, WAITING_STEP

# A PENDING run is cancelled at once; a started one is marked and stops as described above.
_REQUEST_CANCEL = text(
    f"""
UPDATE workflow_runs SET cancel_requested = true, status_reason = :reason,
    status = CASE WHEN {CANCEL_PENDING.sql()} THEN 'CANCELLED' ELSE status END,
    finished_at = CASE WHEN {CANCEL_PENDING.sql()} THEN now() ELSE finished_at END
WHERE id = :id AND ({CANCEL_PENDING.sql()} OR {REQUEST_CANCEL.sql()})
RETURNING status
"""
)


async def request_cancel(
    session: AsyncSession, run_id: uuid.UUID, *, reason: str, schema: str | None
) -> WorkflowRun:
    """Stop a run: nothing new starts; it ends CANCELLED once in-flight steps return.

    A started run's row alone is written here, however many steps it has: the engines, woken,
    cancel its waiting steps in bounded batches (`stop_round`).
    """
    row = (await session.execute(_REQUEST_CANCEL, {"id": run_id, "reason": reason})).first()
    run = await session.get(WorkflowRun, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"no workflow run {run_id}")
    if row is None:
        raise Conflict(f"run {run_id} is already {run.status}; it cannot be cancelled")
    if row.status == RunStatus.CANCELLED:
        event = Event(
            CANCEL_PENDING.event_for(RunStatus.CANCELLED) or "", run_id, {"reason": reason}
        )
        await emit(session, [event], schema=schema)
    else:
        event = Event(REQUEST_CANCEL.event_for(RunStatus.RUNNING) or "", run_id, {"reason": reason})
        await emit(session, [event], schema=schema, wake="stop")
    return run


# Whether run `r` has waiting action steps (ix_step_runs_waiting finds one among any number of
# finished ones). A scalar subquery, not EXISTS: the planner cannot turn it into a join that
# reads every waiting step of every run.
_HAS_WAITING = (
    "(SELECT 1 FROM step_runs s WHERE s.run_id = r.id AND s.role = 'action' "
    f"AND s.status IN {sql_list(WAITING_STEP)} LIMIT 1) IS NOT NULL"
)

# Runs another engine is advancing right now are skipped (a try-lock): replicas share the work
# by run, and none waits behind another.
_PICK_STOPPING = text(
    f"""
WITH candidates AS MATERIALIZED (
    SELECT r.id FROM workflow_runs r
    WHERE r.status = 'RUNNING' AND {STOPPING_RUN} AND {_HAS_WAITING}
    ORDER BY r.id LIMIT :limit
)
SELECT id FROM candidates WHERE pg_try_advisory_xact_lock({run_lock_key("id")})
"""
)

_STILL_WAITING = text(f"SELECT r.id FROM workflow_runs r WHERE r.id = ANY(:ids) AND {_HAS_WAITING}")

_STOPPING_AMONG = text(
    "SELECT r.id, r.cancel_requested FROM workflow_runs r "
    f"WHERE r.id = ANY(:ids) AND r.status = 'RUNNING' AND {STOPPING_RUN}"
)


@dataclass(frozen=True)
class StopRound:
    """One bounded round of stopping: the runs it worked on and those that reached an end."""

    run_ids: list[uuid.UUID]
    changes: list[RunChange]


async def stop_round(
    session: AsyncSession,
    *,
    runs: int,
    schema: str | None,
    owner: str | None = None,
    batch: int = STOP_BATCH,
) -> StopRound:
    """Cancel up to `batch` waiting steps of up to `runs` stopping runs, and advance the runs
    left with none waiting (they end once nothing is in flight). An empty `run_ids`: no
    stopping run has waiting steps that another engine is not already stopping.

    Each round makes progress (the runs it picks have waiting steps, which it cancels), so
    repeating it until `run_ids` is empty ends.
    """
    picked = [row.id for row in await session.execute(_PICK_STOPPING, {"limit": runs})]
    if not picked:
        return StopRound([], [])
    locked = await lock_runs(session, picked)
    events = await stop_waiting_steps(session, locked.ids, limit=batch)
    waiting = {row.id for row in await session.execute(_STILL_WAITING, {"ids": locked.ids})}
    finished = [run_id for run_id in locked.ids if run_id not in waiting]
    if not finished:
        # Nothing else can change while steps wait: advancing would only re-read the run.
        await emit(session, events, schema=schema)
        return StopRound(locked.ids, [])
    # touched_map: the last batch may leave a map_over parent with no open child (it ends).
    changes = await advance_runs(
        session,
        await lock_runs(session, finished),
        schema=schema,
        owner=owner,
        touched_map=True,
        events=events,
        stop_limit=batch,
    )
    return StopRound(locked.ids, changes)


async def stopping_among(
    session: AsyncSession, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Literal["cancelled", "timed_out"]]:
    """Which of these runs are stopping, with the outcome their in-flight action steps get
    when an engine cuts them: "cancelled", or "timed_out" for a run past its deadline."""
    if not run_ids:
        return {}
    rows = await session.execute(_STOPPING_AMONG, {"ids": run_ids})
    return {row.id: "cancelled" if row.cancel_requested else "timed_out" for row in rows}
