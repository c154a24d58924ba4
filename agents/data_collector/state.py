"""Durable per-source state (dlt-style): the cursor a workflow commits once its data landed.

`collect` with a `state_key` reads the committed cursor; the workflow's last step (after the
merge) calls `commit_state` with the cursor `collect` returned. A run that fails in between
commits nothing, so the next run collects the same window again and the merge, keyed by
primary key, absorbs the repeat. Last write wins; each value records the run that wrote it.

The functions only `flush()`: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import STATE_KEY_PATTERN, SourceState

__all__ = ["STATE_KEY_PATTERN", "StoredState", "holds_nul", "load_state", "save_state"]


@dataclass(frozen=True)
class StoredState:
    """One committed cursor with the run that committed it."""

    key: str
    cursor: dict[str, Any]
    run_id: str | None
    updated_at: datetime


def holds_nul(value: Any) -> bool:
    """Whether a NUL character (U+0000) is in any string or key of `value`: PostgreSQL's jsonb
    cannot store one, and refuses the whole write."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


async def load_state(session: AsyncSession, *, key: str) -> StoredState | None:
    """The committed state of `key`, or None when nothing was committed yet."""
    row = await session.get(SourceState, key)
    if row is None:
        return None
    return StoredState(row.key, row.value, row.run_id, row.updated_at)


async def save_state(
    session: AsyncSession, *, key: str, cursor: dict[str, Any], run_id: str | None
) -> StoredState:
    """Upsert the cursor of `key` (ON CONFLICT: last write wins) and return what is stored."""
    values = insert(SourceState).values(key=key, value=cursor, run_id=run_id)
    stmt = values.on_conflict_do_update(
        index_elements=[SourceState.key],
        set_={
            "value": values.excluded.value,
            "run_id": values.excluded.run_id,
            "updated_at": func.now(),
        },
    ).returning(SourceState.updated_at)
    updated_at = (await session.execute(stmt)).scalar_one()
    await session.flush()
    return StoredState(key, cursor, run_id, updated_at)
