"""Step leases: a claimed step belongs to its engine while the lease is renewed; an expired or
released lease puts the step back in the queue without counting the lost attempt."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.outbox import emit
from shared.state.transitions import EXPIRE, RELEASE, step_events

_EXPIRE = text(
    f"""
WITH expired AS (
    SELECT id FROM step_runs
    WHERE {EXPIRE.sql()} AND lease_expires_at < now()
    ORDER BY lease_expires_at LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE step_runs s SET status = '{EXPIRE.to}', lease_owner = NULL, lease_expires_at = NULL,
    attempts = greatest(s.attempts - 1, 0), ready_at = now(), affinity = NULL,
    status_reason = 'lease of ' || coalesce(s.lease_owner, '?') || ' expired; step re-queued',
    attempt_log = s.attempt_log || jsonb_build_array(jsonb_build_object(
        'attempt', s.attempts, 'outcome', 'lease_expired', 'worker', s.lease_owner))
FROM expired WHERE s.id = expired.id AND {EXPIRE.sql("s.status")}
RETURNING s.run_id, s.step_id, s.role, s.map_index, s.status
"""
)


async def expire_leases(session: AsyncSession, *, limit: int, schema: str | None) -> int:
    """Return steps whose worker vanished to READY, without counting the lost attempt."""
    rows = (await session.execute(_EXPIRE, {"limit": limit})).all()
    await emit(session, step_events(EXPIRE, rows, reason="lease expired"), schema=schema)
    return len(rows)


# SKIP LOCKED: a row locked by a transaction recording its result needs no renewal, and waiting
# for it could deadlock against that transaction's locks taken in another order.
_RENEW = text(
    """
WITH mine AS (
    SELECT id FROM step_runs
    WHERE id = ANY(:ids) AND status = 'RUNNING' AND lease_owner = :owner
    ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE step_runs s SET lease_expires_at = now() + make_interval(secs => :lease_s)
FROM mine WHERE s.id = mine.id
RETURNING s.id
"""
)


async def renew_leases(
    session: AsyncSession, *, owner: str, step_ids: list[int], lease_s: float
) -> set[int]:
    """Extend the leases this worker holds; return the ids renewed (busy rows are skipped)."""
    if not step_ids:
        return set()
    rows = await session.execute(_RENEW, {"ids": step_ids, "owner": owner, "lease_s": lease_s})
    return {row.id for row in rows}


_RELEASE = text(
    f"UPDATE step_runs SET status = '{RELEASE.to}', lease_owner = NULL, lease_expires_at = NULL, "
    "attempts = greatest(attempts - 1, 0), status_reason = 'released at shutdown', "
    "ready_at = now(), affinity = NULL "
    f"WHERE id = ANY(:ids) AND {RELEASE.sql()} AND lease_owner = :owner "
    "RETURNING run_id, step_id, role, map_index, status"
)


async def release_leases(
    session: AsyncSession, *, owner: str, step_ids: list[int], schema: str | None
) -> None:
    """Give back unfinished steps at shutdown so another engine starts them at once."""
    if step_ids:
        rows = await session.execute(_RELEASE, {"ids": step_ids, "owner": owner})
        events = step_events(RELEASE, rows, reason="released at shutdown")
        await emit(session, events, schema=schema, wake="steps")
