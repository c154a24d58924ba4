"""The `_merger_loads` ledger each target schema holds: every load's fingerprint and result.

Apart from the load because it is the exactly-once bookkeeping, not the table's data: the
ledger made (or brought up to date), the target's last stored result, and the version and row
count a load starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.data_merger.destinations.identifiers import LOADS_TABLE, quote
from agents.data_merger.destinations.pg_schema import Target


@dataclass
class Ledger:
    """What the ledger says of the target before this load."""

    previous: dict[str, Any] | None
    loads: int  # ledger rows for the target, for results stored before `version` existed


async def ensure_ledger(conn: AsyncConnection, schema: str) -> None:
    qualifier = f"{quote(schema)}."
    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"))
    created = await conn.execute(
        text("SELECT to_regclass(:name) IS NULL"), {"name": f"{qualifier}{LOADS_TABLE}"}
    )
    if created.scalar_one():
        await conn.execute(
            text(
                f"CREATE TABLE {qualifier}{LOADS_TABLE} (target text NOT NULL, "
                "fingerprint text NOT NULL, result jsonb NOT NULL, loaded_at timestamptz NOT "
                "NULL DEFAULT now(), strategy text, PRIMARY KEY (target, fingerprint))"
            )
        )
        await conn.execute(text(f"CREATE INDEX ON {qualifier}{LOADS_TABLE} (target, loaded_at)"))
        return
    # A ledger the earlier loader made has no strategy column. Asked for first, because an
    # ALTER TABLE, even one that changes nothing, would wait for every load into the schema.
    has_strategy = await conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:name) "
            "AND attname = 'strategy' AND NOT attisdropped)"
        ),
        {"name": f"{qualifier}{LOADS_TABLE}"},
    )
    if not has_strategy.scalar_one():
        await conn.execute(
            text(f"ALTER TABLE {qualifier}{LOADS_TABLE} ADD COLUMN IF NOT EXISTS strategy text")
        )


async def ledger_state(conn: AsyncConnection, ledger: str, label: str) -> Ledger:
    found = await conn.execute(
        text(
            f"SELECT result, count(*) OVER () FROM {ledger} WHERE target = :t "
            "ORDER BY loaded_at DESC LIMIT 1"
        ),
        {"t": label},
    )
    row = found.first()
    return Ledger(row[0], int(row[1])) if row else Ledger(None, 0)


def ledger_version(state: Ledger) -> int:
    if state.previous is None:
        return 0
    return int(state.previous.get("version", state.loads))


async def previous_rows(conn: AsyncConnection, target: Target, state: Ledger) -> int:
    """The table's rows before the load: the last load's count, counted only without one."""
    if state.previous is not None and "rows" in state.previous:
        return int(state.previous["rows"])
    return int((await conn.execute(text(f"SELECT count(*) FROM {target.sql}"))).scalar_one())
