"""The load records: after a destination committed, the merger writes what it did.

The row goes to the platform's `dataset_loads` table (GET /datasets/{name}/loads reads it).
It is written after the destination's commit, not in it (a Delta table or a target database
cannot share the platform's transaction), so a merger that dies in between leaves a load
without its record; the step's retry replays the load, the destination answers from its own
ledger, and this writes the missing record. ON CONFLICT keeps a replay from adding a second.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import DatasetLoad


def destination_of(result: dict[str, Any]) -> str:
    """The name a load record gives the place a result says it wrote to."""
    if result.get("target") == "duckdb":
        return f"{result['path']}#{result['table']}"
    return str(result.get("uri") or result.get("table") or result.get("path"))


async def record_load(
    sessionmaker: async_sessionmaker[AsyncSession],
    result: dict[str, Any],
    *,
    fingerprint: str,
    run_id: str | None,
    step_id: str | None,
) -> None:
    """Store the record of one load (once per destination and batch)."""
    stored = {k: v for k, v in result.items() if k != "replayed"}
    values = insert(DatasetLoad).values(
        dataset=result["dataset"],
        run_id=run_id,
        step_id=step_id,
        kind=result["target"],
        destination=destination_of(result),
        write_disposition=result["write_disposition"],
        strategy=result.get("strategy"),
        fingerprint=fingerprint,
        rows_inserted=result.get("inserted", 0),
        rows_updated=result.get("updated", 0),
        rows_deleted=result.get("deleted", 0),
        rows_unchanged=result.get("unchanged", 0),
        rows_written=result.get("written", 0),
        rows_total=result.get("rows"),
        bytes_written=result.get("bytes"),
        destination_version=result.get("version"),
        result=stored,
    )
    async with sessionmaker() as session, session.begin():
        await session.execute(
            values.on_conflict_do_nothing(
                index_elements=[DatasetLoad.destination, DatasetLoad.fingerprint]
            )
        )
