"""Deleting finished runs once their retention period is over, batch by batch.

A run that ended (any terminal status) more than the retention period ago goes with its step
rows (the foreign key cascades), its published events and the Idempotency-Keys that named it,
in one transaction per batch, so a run is never half gone. Nothing else is touched: dataset
loads and source cursors keep the run id they were written by (they are the datasets' history,
not the run's), a retry that pointed at the run keeps running (`retry_of` becomes NULL), and an
event the relay has not published yet stays until it is.

Several controller replicas may purge at once: each batch skips the runs another one holds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.state.machine import TERMINAL_RUN, sql_list

# Oldest finished first, through ix_workflow_runs_finished: the scan reads only the runs it
# deletes, however many are kept.
_PURGE = text(
    f"""
WITH doomed AS (
    SELECT id FROM workflow_runs
    WHERE finished_at < :cutoff AND status IN {sql_list(TERMINAL_RUN)}
    ORDER BY finished_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), keys AS (
    DELETE FROM idempotency_records i USING doomed d WHERE i.resource_id = d.id::text
), events AS (
    DELETE FROM event_outbox e USING doomed d
    WHERE e.run_id = d.id AND e.published_at IS NOT NULL
)
DELETE FROM workflow_runs r USING doomed d WHERE r.id = d.id
"""
)


async def purge_finished_runs(session: AsyncSession, *, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` runs that finished before `cutoff`; how many went."""
    result = await session.execute(_PURGE, {"cutoff": cutoff, "batch": batch})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
