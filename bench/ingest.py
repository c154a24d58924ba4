"""Benchmark: a PostgreSQL table -> Parquet chunks through the collector's code path.

Creates `bench_ingest.events` (bigint id, timestamptz, timestamp, text, numeric(12,2), int,
bool, text with 10 % NULLs) with `--rows` rows unless it already has that many, then runs
`collect_postgres` in this process (as the agent's collect action does) into a temporary
DATA_ROOT and prints rows/s and the process's peak RSS. With `--dlt PYTHON`, the same table
is also loaded by dlt's sql_database source (pyarrow backend, Parquet) in that interpreter,
a separate venv that is never a dependency of the project:

    python3 -m venv /tmp/dltvenv && /tmp/dltvenv/bin/pip install "dlt[postgres,parquet]"
    uv run python bench/ingest.py --rows 1000000 --dlt /tmp/dltvenv/bin/python

DATABASE_URL defaults to the local test database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.base.context import ActionContext  # noqa: E402
from agents.base.settings import AgentSettings  # noqa: E402
from agents.base.sources.models import PostgresSource  # noqa: E402
from agents.data_collector.postgres import collect_postgres  # noqa: E402

URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test").replace(
    "+asyncpg", ""
)
SCHEMA = "bench_ingest"

DLT_SCRIPT = """
import sys, time, resource, dlt
from dlt.sources.sql_database import sql_table
url, schema, out = sys.argv[1].replace("postgresql:", "postgresql+psycopg2:", 1), *sys.argv[2:4]
pipe = dlt.pipeline("bench_ingest", destination=dlt.destinations.filesystem(out),
                    pipelines_dir=out + "/_p", dataset_name="d")
started = time.perf_counter()
info = pipe.run(sql_table(url, "events", schema=schema, backend="pyarrow", chunk_size=100_000),
                loader_file_format="parquet")
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


async def make_table(rows: int) -> None:
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        exists = await conn.fetchval(f"SELECT to_regclass('{SCHEMA}.events') IS NOT NULL")
        if exists and await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.events") == rows:
            return
        await conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.events")
        await conn.execute(
            f"CREATE TABLE {SCHEMA}.events (id bigint PRIMARY KEY, updated_at timestamptz,"
            " created_local timestamp, name text, amount numeric(12,2), qty integer,"
            " active boolean, note text)"
        )
        await conn.execute(
            f"INSERT INTO {SCHEMA}.events SELECT g, timestamptz '2026-01-01' + g * interval '1s',"
            " timestamp '2026-01-01' + g * interval '1 minute', 'name-' || g,"
            " (g % 100000) / 100.0, g % 1000, g % 2 = 0,"
            " CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text) END"
            f" FROM generate_series(1, {rows}) g"
        )
        await conn.execute(f"VACUUM ANALYZE {SCHEMA}.events")
    finally:
        await conn.close()


async def run_collect(data_root: str, chunk_size: int) -> dict[str, Any]:
    settings = AgentSettings(data_root=data_root, allow_private_hosts=["127.0.0.1"])
    # collect_postgres reads only the settings and the ids from its context.
    ctx = cast(ActionContext, SimpleNamespace(settings=settings, run_id="bench", step_id="pg"))
    source = PostgresSource(kind="postgres", url=URL, db_schema=SCHEMA, table="events")
    return await collect_postgres(
        source, ctx, incremental=None, previous=None, columns=None, chunk_size=chunk_size
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--dlt", metavar="PYTHON", help="also time dlt in this interpreter")
    args = parser.parse_args()
    asyncio.run(make_table(args.rows))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        out = asyncio.run(run_collect(tmp, args.chunk_size))
        took = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert out["rows"] == args.rows, out["rows"]
        print(
            f"collector: {out['rows']} rows in {took:.2f} s = {out['rows'] / took:,.0f} rows/s, "
            f"{out['count']} files, {out['bytes'] / 1e6:.1f} MB, peak RSS {peak_mb:.0f} MB"
        )
        if args.dlt:
            done = subprocess.run(
                [args.dlt, "-c", DLT_SCRIPT, URL, SCHEMA, tmp + "/dlt"],
                check=True,
                capture_output=True,
                text=True,
            )
            dlt_took, dlt_kb = (float(x) for x in done.stdout.split()[-2:])
            print(
                f"dlt pyarrow: {args.rows / dlt_took:,.0f} rows/s ({dlt_took:.2f} s), "
                f"peak RSS {dlt_kb / 1024:.0f} MB"
            )


if __name__ == "__main__":
    main()
