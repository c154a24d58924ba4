"""Fan-out: a map_over step hands its items to child rows (at most `fanout_limit` at once), a
failed item cancels its waiting siblings, and the parent ends once no item is open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import Event
from shared.state.machine import BROKEN_STEP, FAILED_STEP, TERMINAL_STEP, StepStatus, sql_list
from shared.state.transitions import (
    CANCEL_ITEMS,
    CREATE_ITEMS,
    FAN_OUT,
    FINISH_MAP,
    OPEN_WINDOW,
    RECORD,
    step_events,
    step_key,
)

if TYPE_CHECKING:
    from shared.state.steps import AttemptResult

_TERMINAL = sql_list(TERMINAL_STEP)

_FINISH_EMPTY = text(
    f"""
UPDATE step_runs SET status = 'SUCCEEDED', output = '[]'::jsonb, error = NULL,
    status_reason = 'map_over list was empty', next_attempt_at = now(), finished_at = now(),
    lease_owner = NULL, lease_expires_at = NULL
WHERE id = :id AND {RECORD.sql()} AND lease_owner = :owner AND attempts = :attempt
RETURNING run_id, step_id, role, map_index, status
"""
)

_EXPAND_PARENT = text(
    f"""
UPDATE step_runs SET lease_owner = NULL, lease_expires_at = NULL, fanout_limit = :limit,
    status_reason = :reason
WHERE id = :id AND {FAN_OUT.sql()} AND lease_owner = :owner AND attempts = :attempt
RETURNING run_id, step_id, role, map_index, status
"""
)

# An item renders what its parent renders (map_over) and the params: it needs what the parent
# needs (shared/state/needs.py).
_INSERT_CHILDREN = text(
    """
INSERT INTO step_runs (run_id, step_id, role, map_index, agent, action, depends_on, status,
                       priority, attempts, max_attempts, ready_at, attempt_log, affinity, needs)
SELECT p.run_id, p.step_id, 'action', i, p.agent, p.action, '{}',
       CASE WHEN i < :limit THEN 'READY' ELSE 'PENDING' END, p.priority, 0, p.max_attempts,
       CASE WHEN i < :limit THEN now() END, '[]'::jsonb, :owner, p.needs
FROM step_runs p, generate_series(0, :count - 1) AS i
WHERE p.id = :id
ON CONFLICT ON CONSTRAINT uq_step_runs_identity DO NOTHING
RETURNING run_id, step_id, role, map_index, status
"""
)


async def expand(session: AsyncSession, result: AttemptResult, events: list[Event]) -> None:
    """A map_over parent's attempt came back with its items: create the children (the first
    `fanout_limit` READY), or succeed at once on an empty list."""
    step = result.step
    items = result.map_items or []
    params = {"id": step.id, "owner": result.worker, "attempt": step.attempts}
    if not items:
        rows = await session.execute(_FINISH_EMPTY, params)
        events += step_events(RECORD, rows, agent=step.agent, action=step.action)
        return
    reason = f"waiting for {len(items)} map items, at most {result.fanout_limit} at once"
    parent = (
        await session.execute(
            _EXPAND_PARENT, {**params, "limit": result.fanout_limit, "reason": reason}
        )
    ).first()
    if parent is None:
        return  # lease lost: the step belongs to someone else now
    events.append(
        Event(
            FAN_OUT.event_for(StepStatus.RUNNING) or "",
            step.run_id,
            {**step_key(parent), "items": len(items), "at_once": result.fanout_limit},
        )
    )
    children = await session.execute(
        _INSERT_CHILDREN,
        {"id": step.id, "limit": result.fanout_limit, "count": len(items), "owner": result.worker},
    )
    events += step_events(CREATE_ITEMS, children)


# Both statements below find the map steps concerned first and then touch only their children:
# a per-child correlated subquery made each recorded child cost O(children), O(n²) in all.
# MATERIALIZED: without statistics the planner may otherwise rerun `broken` per waiting child.
_CANCEL_SIBLINGS = text(
    f"""
WITH broken AS MATERIALIZED (
    SELECT DISTINCT run_id, step_id FROM step_runs
    WHERE run_id = ANY(:live) AND role = 'action' AND map_index >= 0
      AND status IN {sql_list(BROKEN_STEP)}
)
UPDATE step_runs c SET status = '{CANCEL_ITEMS.to}', finished_at = now(),
    status_reason = 'another item of this map_over step failed'
FROM broken b
WHERE c.run_id = ANY(:live) AND c.run_id = b.run_id AND c.step_id = b.step_id
  AND c.role = 'action' AND c.map_index >= 0 AND {CANCEL_ITEMS.sql("c.status")}
RETURNING c.run_id, c.step_id, c.role, c.map_index, c.status
"""
)

# Per fanned-out step: how many children may still start, then that many PENDING children in
# item order (the unique index on (run_id, step_id, role, map_index) serves both lookups).
_OPEN_WINDOW = text(
    f"""
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
               AND c.role = 'action' AND c.map_index >= 0 AND {OPEN_WINDOW.sql("c.status")}
             ORDER BY c.map_index LIMIT greatest(parents.free, 0)) ch
)
UPDATE step_runs c SET status = '{OPEN_WINDOW.to}', ready_at = now(),
    affinity = coalesce(CAST(:owner AS text), c.affinity)
FROM picked WHERE c.id = picked.id AND {OPEN_WINDOW.sql("c.status")}
RETURNING c.run_id, c.step_id, c.role, c.map_index, c.status
"""
)

_FINISH_MAP_PARENTS = text(
    f"""
WITH agg AS (
    SELECT run_id, step_id,
           count(*) FILTER (WHERE status NOT IN {_TERMINAL}) AS open,
           count(*) FILTER (WHERE status IN {sql_list(FAILED_STEP)}) AS failed,
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
  AND p.map_index = -1 AND {FINISH_MAP.sql("p.status")} AND p.lease_owner IS NULL AND agg.open = 0
RETURNING p.run_id, p.step_id, p.role, p.map_index, p.status, agg.total
"""
)


async def advance_maps(
    session: AsyncSession, runs: dict[str, Any], *, owner: str | None
) -> list[Event]:
    """Cancel the waiting siblings of failed items, open each window as far as it allows, and
    end the parents with no open item; the events of every row changed."""
    events = step_events(CANCEL_ITEMS, await session.execute(_CANCEL_SIBLINGS, runs))
    events += step_events(
        OPEN_WINDOW, await session.execute(_OPEN_WINDOW, {**runs, "owner": owner})
    )
    for row in await session.execute(_FINISH_MAP_PARENTS, runs):
        events += step_events(FINISH_MAP, [row], items=row.total)
    return events
