"""Benchmark: the data-merger's PostgreSQL destination, a full load and a 2 % merge into it.

Builds a `--rows`-row frame of six columns (bigint key, text, double, timestamptz, boolean,
integer), loads it into a new table of a fresh schema through `destinations.postgres.load`
(an upsert into a table that does not exist yet: created, COPYed, then keyed) inside one
transaction with the advisory lock, as the merge action does, and prints rows/s. Then merges a
batch of 2 % of that size (1 % existing keys with changed values, 1 % new keys) into it and
prints its time and its ratio to the full load. Also prints the process's peak RSS. The
schema is dropped at the end.

    .venv/bin/python bench/pg_destination.py --rows 2000000

DATABASE_URL defaults to the local test database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.data_merger import dataset  # noqa: E402
from agents.data_merger.destinations import LoadRequest, postgres  # noqa: E402
from agents.data_merger.merging import MergeSpec  # noqa: E402

URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TABLE = "events"


def frame(start: int, stop: int, version: int) -> pl.LazyFrame:
    """Rows with keys start..stop-1; `version` changes every value but the key."""
    ids = pl.int_range(start, stop, eager=True).alias("id")
    return pl.LazyFrame(ids).with_columns(
        name=pl.format("customer-{}-{}", pl.col("id"), pl.lit(version)),
        amount=pl.col("id").cast(pl.Float64) * 1.25 + version,
        at=pl.lit(datetime(2024, 1, 1, tzinfo=UTC)) + pl.duration(seconds=pl.col("id") + version),
        active=(pl.col("id") + version) % 3 == 0,
        quantity=((pl.col("id") + version) % 1000).cast(pl.Int32),
    )


async def timed_load(engine: AsyncEngine, schema: str, batch: pl.LazyFrame) -> tuple[float, dict]:
    spec = MergeSpec("merge", ["id"], None, False, None)
    request = LoadRequest("bench", batch, None, spec, uuid.uuid4().hex)
    started = time.perf_counter()
    async with dataset.locked(engine, f"table:{schema}.{TABLE}") as conn:
        result = await postgres.load(conn, request, table=TABLE, schema=schema)
    return time.perf_counter() - started, result


async def main(rows: int) -> None:
    engine = create_async_engine(URL)
    schema = f"bench_pgdest_{uuid.uuid4().hex[:8]}"
    try:
        full = frame(0, rows, 0).collect().lazy()  # built before the clock starts
        seconds, result = await timed_load(engine, schema, full)
        print(
            f"full load: {result['inserted']:,} rows in {seconds:.2f} s "
            f"= {rows / seconds:,.0f} rows/s"
        )

        one_percent = rows // 100
        changed = frame(rows - one_percent, rows, 1)  # the last 1 % of keys, new values
        added = frame(rows, rows + one_percent, 0)  # 1 % new keys
        merge = pl.concat([changed, added]).collect().lazy()
        merge_seconds, merged = await timed_load(engine, schema, merge)
        print(
            f"2 % merge: {merged['updated']:,} updated + {merged['inserted']:,} inserted "
            f"in {merge_seconds:.2f} s = {merge_seconds / seconds:.1%} of the full load "
            f"(table now {merged['rows']:,} rows)"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: {peak:,.0f} MiB")
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    asyncio.run(main(parser.parse_args().rows))
