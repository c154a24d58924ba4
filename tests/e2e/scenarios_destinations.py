"""Fault scenarios per destination: the merger SIGKILLed while it loads, and the PostgreSQL
server restarted while it loads, with the rows counted in the destination itself.

Each run appends its own five tagged rows to one shared table: an append has no key to absorb
a repeat, so a load applied twice shows as duplicate rows and a load lost as missing ones.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import duckdb
import polars as pl

from tests.conftest import DATABASE_URL, target_schema
from tests.e2e.chaos import ChaosPlatform
from tests.e2e.counts import Counts, count_all
from tests.e2e.faults import restart_postgres
from tests.e2e.scenarios import ROWS, pipeline_inputs, pipeline_spec

KINDS = ("delta", "duckdb", "postgres")


def destination(platform: ChaosPlatform, kind: str, table: str) -> dict[str, Any]:
    """The merge step's `destination` for `kind`."""
    if kind == "postgres":
        return {"kind": "postgres", "table": table, "schema": target_schema(platform.schema)}
    if kind == "duckdb":
        return {"kind": "duckdb", "path": f"{table}.duckdb", "table": table}
    return {"kind": "delta"}


def destination_spec(platform: ChaosPlatform, kind: str, table: str) -> dict[str, Any]:
    """collect → convert → merge (append) into `table` at a destination of `kind`."""
    spec = pipeline_spec(platform, table)
    merge = next(step for step in spec["steps"] if step["id"] == "merge")
    del merge["params"]["target"]
    merge["params"]["destination"] = destination(platform, kind, table)
    merge["params"]["write_disposition"] = "append"
    return {**spec, "name": f"chaos-{kind}"}


async def rows_per_tag(platform: ChaosPlatform, kind: str, table: str) -> dict[str, int]:
    """Rows of each run's tag, read from the destination (not from what the merger said)."""
    if kind == "postgres":
        rows = await platform.query(
            f'SELECT tag, count(*) AS n FROM "{target_schema(platform.schema)}"."{table}" '
            "GROUP BY tag"
        )
        return {row["tag"]: int(row["n"]) for row in rows}

    def read() -> dict[str, int]:
        if kind == "delta":
            frame = pl.scan_delta(str(platform.data_root / "datasets" / table))
            counted = frame.group_by("tag").len().collect()
        else:
            path = platform.data_root / "duckdb" / f"{table}.duckdb"
            with duckdb.connect(str(path), read_only=True) as conn:
                counted = conn.sql(f'SELECT tag, count(*) AS len FROM "{table}" GROUP BY tag').pl()
        return {str(tag): int(n) for tag, n in counted.iter_rows()}

    return await asyncio.to_thread(read)


async def _count_rows(
    platform: ChaosPlatform, counts: Counts, kind: str, table: str, run_ids: list[str]
) -> None:
    per_tag = await rows_per_tag(platform, kind, table)
    runs = await platform.query(
        "SELECT status, inputs->>'source' AS source FROM workflow_runs WHERE id = ANY($1::uuid[])",
        run_ids,
    )
    for run in runs:
        found = per_tag.get(run["source"].rsplit("/", 1)[-1], 0)
        counts.data_duplicates += max(0, found - ROWS)
        if run["status"] == "SUCCEEDED" and found < ROWS:
            counts.missing_effects += 1
    counts.notes["rows_loaded"] = sum(per_tag.values())


async def merger_crashes(
    platform: ChaosPlatform,
    kind: str,
    *,
    runs: int,
    kills: int = 4,
    every_s: tuple[float, float] = (0.3, 1.2),
    timeout_s: float = 240,
    seed: int = 7,
) -> Counts:
    """`runs` pipelines appending into one `kind` table while the merger is SIGKILLed `kills`
    times, each a moment after it came back, then left to finish."""
    started = time.monotonic()
    table = f"orders_{kind}_{uuid.uuid4().hex[:6]}"
    spec = destination_spec(platform, kind, table)
    inputs = pipeline_inputs(platform, f"merger-{kind}", runs)
    merger = platform.services["data-merger"]
    rng = random.Random(seed)
    run_ids = await platform.submit(spec, inputs)
    done = 0
    try:
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(*every_s))
            await asyncio.to_thread(merger.kill)
            done += 1
            await asyncio.to_thread(merger.start)
            await asyncio.to_thread(merger.wait_healthy, 180)
        await platform.wait_terminal(run_ids, timeout_s)
    finally:
        await asyncio.to_thread(merger.wait_healthy, 180)
    counts = await count_all(
        platform, f"merger SIGKILL ({kind})", run_ids, faults=done, started=started
    )
    await _count_rows(platform, counts, kind, table, run_ids)
    return counts


async def postgres_restart_during_loads(
    platform: ChaosPlatform, *, runs: int, timeout_s: float = 240
) -> list[Counts]:
    """The PostgreSQL server restarts once while runs load into a table of every kind (the
    platform's state and the merger's lock are on it, and for postgres the table itself)."""
    started = time.monotonic()
    batches: list[tuple[str, str, list[str]]] = []
    for kind in KINDS:
        table = f"orders_pg_{kind}_{uuid.uuid4().hex[:6]}"
        spec = destination_spec(platform, kind, table)
        run_ids = await platform.submit(spec, pipeline_inputs(platform, f"pg-{kind}", runs))
        batches.append((kind, table, run_ids))
    everything = [run for _, _, ids in batches for run in ids]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # restart once the loads are under way
        if "SUCCEEDED" in (await platform.statuses(everything)).values():
            break
        await asyncio.sleep(0.2)
    restart_s = await asyncio.to_thread(restart_postgres, DATABASE_URL)
    await platform.wait_terminal(everything, timeout_s)
    results = []
    for kind, table, run_ids in batches:
        counts = await count_all(
            platform, f"PostgreSQL restart ({kind})", run_ids, faults=1, started=started
        )
        await _count_rows(platform, counts, kind, table, run_ids)
        counts.notes["restart_s"] = round(restart_s, 1)
        results.append(counts)
    return results
