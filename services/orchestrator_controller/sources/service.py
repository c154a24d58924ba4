"""Reading and resetting the cursor a workflow committed for a source (`source_state`).

The collector writes it (commit_state, after the merge); the API only shows and deletes it.
Functions only `flush()`: the caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.sources.schemas import SourceStateOut
from shared.db.models import SourceState
from shared.errors import NotFound


async def find(session: AsyncSession, *, key: str) -> SourceState:
    """The state stored under `key`; 404 when none is."""
    row = await session.get(SourceState, key)
    if row is None:
        raise NotFound(f"no state stored for source {key!r}", code="unknown_source")
    return row


async def reset(session: AsyncSession, *, key: str) -> SourceState:
    """Delete the state of `key` (its next run collects from the start); what was removed."""
    row = await find(session, key=key)
    await session.delete(row)
    await session.flush()
    return row


def describe(row: SourceState) -> SourceStateOut:
    """The API view of a stored state."""
    return SourceStateOut(
        key=row.key, cursor=row.value, run_id=row.run_id, updated_at=row.updated_at
    )
