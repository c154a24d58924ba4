"""Benchmark: a PostgreSQL table -> Parquet chunks through the collector's and converter's code.

Creates `bench_ingest.events` (bigint id, timestamptz, timestamp, text, numeric(12,2), int,
bool, text with 10 % NULLs) with `--rows` rows unless it already has that many, then runs
`collect_postgres` in this process (as the agent's collect action does) into a temporary
DATA_ROOT and prints rows/s and the process's peak RSS. With `--convert N`, the collected
chunks then go through `convert_file` (as the convert action does, one file at a time) N
times in each of three ways, alternating: `as-is` (today: the chunks are already final and are
published byte for byte, agents.data_converter.reuse), `rewrite` (rewrite_parquet: the full
decode-plan-encode conversion) and `before` (rewrite with the inference of the text columns
as it was before the first-values probe, i.e. the converter before issue 14's reuse); it
prints every run's convert time and collect + convert rows/s. With `--dlt PYTHON`, the same
table is also loaded by dlt's sql_database source (`--dlt-backend`: pyarrow and/or
connectorx, Parquet) in that interpreter, a separate venv that is never a dependency of the
project:

    python3 -m venv /tmp/dltvenv
    /tmp/dltvenv/bin/pip install "dlt[postgres,parquet,sql_database]" connectorx
    uv run python bench/ingest.py --rows 2000000 --convert 3 \
        --dlt /tmp/dltvenv/bin/python --dlt-backend pyarrow connectorx

DATABASE_URL defaults to the local test database.

`--source rest`: a paginated REST API of `--records` records (page size 100) served by a
stand-in for json-server 0.17 in a separate process (`GET /records?_page=N&_limit=100`, a JSON
array per page, `X-Total-Count` and `Link: rel="next"` headers, as json-server answers), read
by `collect_rest` in this process into NDJSON (the default format) and Parquet, and by dlt's
rest_api source (Link-header paginator) into filesystem Parquet and JSONL in `--dlt PYTHON`.
Runs alternate platform and dlt `--repeat` times; every output is checked (records, id sum):

    uv run python bench/ingest.py --source rest --records 20000 --dlt .venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.base.context import ActionContext  # noqa: E402
from agents.base.security import pinned_client  # noqa: E402
from agents.base.settings import AgentSettings  # noqa: E402
from agents.base.sources.models import HttpSource, PostgresSource  # noqa: E402
from agents.base.storage import DataRoot  # noqa: E402
from agents.data_collector.postgres import collect_postgres  # noqa: E402
from agents.data_collector.rest import Pagination, collect_rest  # noqa: E402
from agents.data_converter import contracts  # noqa: E402
from agents.data_converter.conversion import ConvertOptions, convert_file  # noqa: E402

URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test").replace(
    "+asyncpg", ""
)
SCHEMA = "bench_ingest"

DLT_SCRIPT = """
import sys, time, resource, dlt
from dlt.sources.sql_database import sql_table
raw, schema, out, backend = sys.argv[1:5]
url = raw.replace("postgresql:", "postgresql+psycopg2:", 1)
pipe = dlt.pipeline("bench_ingest", destination=dlt.destinations.filesystem(out),
                    pipelines_dir=out + "/_p", dataset_name="d")
# connectorx takes a plain libpq URL of its own.
kwargs = {"backend_kwargs": {"conn": raw}} if backend == "connectorx" else {}
started = time.perf_counter()
info = pipe.run(sql_table(url, "events", schema=schema, backend=backend, chunk_size=100_000,
                          **kwargs), loader_file_format="parquet")
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


# A stand-in for json-server 0.17 (`json-server db.json`): pages pre-encoded, keep-alive.
REST_SERVER_SCRIPT = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
records = int(sys.argv[1])
rows = [{"id": i, "name": f"user {i}", "email": f"user{i}@example.com",
         "amount": round(i * 1.25, 2), "active": i % 3 != 0,
         "created_at": f"2026-01-{i % 28 + 1:02d}T{i % 24:02d}:00:00Z",
         "address": {"street": f"{i} Main St", "city": ["Oslo", "Lyon", "Kyiv"][i % 3],
                     "zip": f"{i % 100000:05d}"},
         "tags": ["a", "b"][: i % 3], "note": None if i % 10 == 0 else "résumé ✓"}
        for i in range(1, records + 1)]
cache = {}
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    def do_GET(self):
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        page, limit = int(query.get("_page", 1)), int(query.get("_limit", 10))
        last = max(1, -(-records // limit))
        if (page, limit) not in cache:
            cache[page, limit] = json.dumps(rows[(page - 1) * limit : page * limit]).encode()
        body = cache[page, limit]
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Total-Count", str(records))
        base = f"http://{self.headers['Host']}{parts.path}?_limit={limit}&_page="
        links = [f'<{base}1>; rel="first"']
        if page < last:
            links.append(f'<{base}{page + 1}>; rel="next"')
        links.append(f'<{base}{last}>; rel="last"')
        self.send_header("Link", ", ".join(links))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        return  # no line per request: the bench reads the port from stdout
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

DLT_REST_SCRIPT = """
import glob, sys, time, resource, dlt
import pyarrow.json as pj, pyarrow.parquet as pq
from dlt.sources.rest_api import rest_api_source
base, out, fmt = sys.argv[1:4]
source = rest_api_source({
    "client": {"base_url": base, "paginator": {"type": "header_link"}},
    "resources": [{"name": "records", "endpoint": {"path": "records", "params": {"_limit": 100}}}],
})
pipe = dlt.pipeline("bench_rest", destination=dlt.destinations.filesystem(out),
                    pipelines_dir=out + "/_p", dataset_name="d")
started, cpu = time.perf_counter(), time.process_time()
pipe.run(source, loader_file_format=fmt)
took, cpu = time.perf_counter() - started, time.process_time() - cpu
rows = idsum = 0
for path in glob.glob(out + "/d/records/*"):
    table = pq.read_table(path) if fmt == "parquet" else pj.read_json(path)
    rows, idsum = rows + table.num_rows, idsum + sum(table.column("id").to_pylist())
print(took, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rows, idsum)
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
    ctx = cast(
        ActionContext,
        SimpleNamespace(settings=settings, run_id="bench", step_id="pg", idempotency_key=None),
    )
    source = PostgresSource(kind="postgres", url=URL, db_schema=SCHEMA, table="events")
    return await collect_postgres(
        source, ctx, incremental=None, previous=None, columns=None, chunk_size=chunk_size
    )


async def run_rest_collect(data_root: str, base: str, output_format: str) -> dict[str, Any]:
    settings = AgentSettings(data_root=data_root, allow_private_hosts=["127.0.0.1"])
    # collect_rest reads the settings, the ids, the shared HTTP client and the model slots.
    async with pinned_client(timeout=30.0, follow_redirects=False) as http:  # as the agent's
        ctx = cast(
            ActionContext,
            SimpleNamespace(
                settings=settings, run_id="bench", step_id="rest", http=http, models={}
            ),
        )
        source = HttpSource(kind="http", url=f"{base}/records")
        pagination = Pagination(type="page", page_param="_page", size_param="_limit", page_size=100)
        return await collect_rest(
            source,
            ctx,
            pagination=pagination,
            records_path=None,
            incremental=None,
            previous=None,
            rate_limit=None,
            max_pages=None,
            max_attempts=3,
            output_format=output_format,
        )


def staged_check(out: dict[str, Any]) -> tuple[int, int]:
    """Records and the sum of ids in the staged files, read back from disk."""
    rows = idsum = 0
    for manifest in out["files"]:
        path = manifest["uri"]  # a local DATA_ROOT: the plain path
        table = pq.read_table(path) if manifest["format"] == "parquet" else pj.read_json(path)
        rows += table.num_rows
        idsum += pc.sum(table.column("id")).as_py()
    return rows, idsum


def rest_convert(data_root: str, out: dict[str, Any]) -> float:
    """Seconds to convert the staged files to Parquet one after the other, as convert does."""
    root = DataRoot.from_setting(data_root)
    options = ConvertOptions(
        format="auto", known=None, mode="evolve", infer_types=True, sheet=None, compression="zstd"
    )
    started = time.perf_counter()
    rows = 0
    for number, manifest in enumerate(out["files"]):
        target = root.path("convert", f"{number:05d}.parquet")
        converted = convert_file(
            manifest["uri"], source_uri=manifest["uri"], root=root, target=target, options=options
        )
        rows += converted["rows"]
    took = time.perf_counter() - started
    assert rows == out["records"], (rows, out["records"])
    return took


def rest_bench(args: argparse.Namespace) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", REST_SERVER_SCRIPT, str(args.records)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        want = (args.records, args.records * (args.records + 1) // 2)
        for trial in range(1, args.repeat + 1):
            for fmt in ("ndjson", "parquet"):
                with tempfile.TemporaryDirectory() as tmp:
                    started, cpu = time.perf_counter(), time.process_time()
                    out = asyncio.run(run_rest_collect(tmp, base, fmt))
                    took, cpu = time.perf_counter() - started, time.process_time() - cpu
                    got = staged_check(out)
                    converted = rest_convert(tmp, out) if fmt == "ndjson" else None
                assert got == want and out["read"] == args.records, (got, want, out["read"])
                print(
                    f"trial {trial} platform collect {fmt}: {args.records} records in "
                    f"{took:.2f} s = {args.records / took:,.0f} records/s, CPU {cpu:.2f} s, "
                    f"{out['pages']} pages, {len(out['files'])} files"
                )
                if converted is not None:
                    print(
                        f"trial {trial} platform convert {fmt} -> Parquet: {converted:.2f} s; "
                        f"collect + convert {took + converted:.2f} s = "
                        f"{args.records / (took + converted):,.0f} records/s"
                    )
            for fmt in ("parquet", "jsonl") if args.dlt else ():
                with tempfile.TemporaryDirectory() as tmp:
                    done = subprocess.run(
                        [args.dlt, "-c", DLT_REST_SCRIPT, base, tmp + "/dlt", fmt],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                dlt_took, dlt_cpu, dlt_kb, rows, idsum = (
                    float(x) for x in done.stdout.split()[-5:]
                )
                assert (int(rows), int(idsum)) == want, (rows, idsum, want)
                print(
                    f"trial {trial} dlt rest_api {fmt}: {args.records} records in "
                    f"{dlt_took:.2f} s = {args.records / dlt_took:,.0f} records/s, "
                    f"CPU {dlt_cpu:.2f} s, peak RSS {dlt_kb / 1024:.0f} MB"
                )
    finally:
        server.terminate()
        server.wait(timeout=10)


def run_convert(data_root: str, files: list[dict[str, Any]], mode: str, index: int) -> float:
    """Seconds to convert every collected chunk one after the other, in `mode`."""
    root = DataRoot.from_setting(data_root)
    options = ConvertOptions(
        format="auto",
        known=None,
        mode="evolve",
        infer_types=True,
        sheet=None,
        compression="zstd",
        rewrite_parquet=mode != "as-is",
    )
    probe = contracts._PROBE
    if mode == "before":  # no probe: every sampled text value parsed, as before issue 14
        contracts._PROBE = sys.maxsize
    try:
        started = time.perf_counter()
        rows = 0
        for number, manifest in enumerate(files):
            target = root.path("convert", f"{mode}-{index}", f"{number:04d}.parquet")
            out = convert_file(
                manifest["uri"],
                source_uri=manifest["uri"],
                root=root,
                target=target,
                options=options,
            )
            assert out["rows"] == manifest["rows"] and out["schema"] == files[0]["schema_out"], out
            rows += out["rows"]
        return time.perf_counter() - started
    finally:
        contracts._PROBE = probe


def convert_all(data_root: str, out: dict[str, Any], collect_s: float, repeat: int) -> None:
    """Convert the collected chunks `repeat` times in each mode, alternating; print each run."""
    files = out["files"]
    first = convert_file_schema(data_root, files[0])
    files[0]["schema_out"] = first
    times: dict[str, list[float]] = {"as-is": [], "rewrite": [], "before": []}
    for index in range(repeat):
        for mode in times:
            times[mode].append(run_convert(data_root, files, mode, index))
            print(f"  convert {mode:7s} run {index + 1}: {times[mode][-1]:.2f} s", flush=True)
    rows = out["rows"]
    for mode, runs in times.items():
        best, median = min(runs), statistics.median(runs)
        print(
            f"convert {mode:7s}: {', '.join(f'{t:.2f}' for t in runs)} s (median {median:.2f} s,"
            f" {rows / median:,.0f} rows/s); collect + convert {collect_s + median:.2f} s ="
            f" {rows / (collect_s + median):,.0f} rows/s (best {rows / (collect_s + best):,.0f})"
        )


def convert_file_schema(data_root: str, manifest: dict[str, Any]) -> dict[str, str]:
    """The schema the full conversion writes for one chunk (every mode must write the same)."""
    root = DataRoot.from_setting(data_root)
    options = ConvertOptions(
        format="auto",
        known=None,
        mode="evolve",
        infer_types=True,
        sheet=None,
        compression="zstd",
        rewrite_parquet=True,
    )
    target = root.path("convert", "schema.parquet")
    schema: dict[str, str] = convert_file(
        manifest["uri"], source_uri=manifest["uri"], root=root, target=target, options=options
    )["schema"]
    return schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--dlt", metavar="PYTHON", help="also time dlt in this interpreter")
    parser.add_argument(
        "--dlt-backend",
        nargs="+",
        choices=("pyarrow", "connectorx"),
        default=["pyarrow"],
        help="postgres: dlt sql_table backends to time (connectorx needs it in that interpreter)",
    )
    parser.add_argument(
        "--convert", type=int, default=0, metavar="N", help="convert the chunks N times each way"
    )
    parser.add_argument("--source", choices=("postgres", "rest"), default="postgres")
    parser.add_argument("--records", type=int, default=20_000, help="rest: records served")
    parser.add_argument("--repeat", type=int, default=3, help="rest: alternating trials")
    args = parser.parse_args()
    if args.source == "rest":
        rest_bench(args)
        return
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
        if args.convert:
            convert_all(tmp, out, took, args.convert)
        for backend in args.dlt_backend if args.dlt else ():
            done = subprocess.run(
                [args.dlt, "-c", DLT_SCRIPT, URL, SCHEMA, f"{tmp}/dlt-{backend}", backend],
                check=True,
                capture_output=True,
                text=True,
            )
            dlt_took, dlt_kb = (float(x) for x in done.stdout.split()[-2:])
            print(
                f"dlt {backend}: {args.rows / dlt_took:,.0f} rows/s ({dlt_took:.2f} s), "
                f"peak RSS {dlt_kb / 1024:.0f} MB"
            )


if __name__ == "__main__":
    main()
