"""Benchmark: the data-merger's destinations (Delta, PostgreSQL, DuckDB), beside dlt's.

Generates `--rows` rows (id bigint key, name text, amount double, created_at timestamptz UTC,
active bool, qty int) as Parquet files of 100,000 rows (the converter's outputs), a change
batch of 2 % (the last 1 % of the ids with a new `amount`, 1 % new ids) and a nothing-changed
batch (the 2 % of ids just below the changed ones, as they are, in reverse order, so the file
and its fingerprint are new). Then, per destination: a full load into a new table (merge,
upsert on `id`), the 2 % merge, the nothing-changed merge. Each is one fresh subprocess
(`--one`), so its peak RSS is that load's alone, and runs the merge action's code path:
`fingerprint` + `prepare` + `LoadRequest` + the destination's `load` (PostgreSQL: an
AsyncEngine on DATABASE_URL, the advisory lock and one transaction, schema `bench_dest`).
With `--dlt PYTHON` (a venv with `dlt[deltalake,duckdb,postgres]`, never a project dependency)
dlt does the same three steps from the same files: Arrow tables from a merge/upsert resource
into its filesystem destination as Delta, its duckdb and its postgres destination (schema
`bench_dest_dlt`, loaded as csv: COPY, its fast path without an ADBC driver). Prints a table
and the issue's targets.

    .venv/bin/python bench/destinations.py --rows 2000000 --dlt /tmp/dltvenv/bin/python
    .venv/bin/python bench/destinations.py --rows 200000 --only delta,duckdb
    .venv/bin/python bench/destinations.py --dlt /tmp/dltvenv/bin/python --repeat 3

`--repeat N` runs every sequence N times and keeps each step's best time (and the highest
peak RSS): on a shared machine single runs are slowed at random.

The dlt venv, if missing:

    .venv-tools/bin/uv venv /tmp/dltvenv
    .venv-tools/bin/uv pip install --python /tmp/dltvenv/bin/python \
        "dlt[deltalake,duckdb,postgres]" pyarrow

The figures are a long-running agent's: before its clock starts, each subprocess makes the
same load(s) of 100 rows into a throwaway target (`*_warmup`), so that the lazy imports and
first-use set-up a process pays once (pandas, pulled in by pyarrow and polars on their first
conversion, is about 0.8 s) are not charged to the measured load; `base MiB` is the RSS then.

To profile one load, keep the folder and rerun a step (`full` first resets its target):

    .venv/bin/python bench/destinations.py --only delta --workdir /tmp/bench-dest
    .venv/bin/python bench/destinations.py --one ours --destination delta --step full \
        --workdir /tmp/bench-dest
    .venv/bin/python -m cProfile -s cumtime bench/destinations.py --one ours \
        --destination delta --step merge --workdir /tmp/bench-dest | head -60

The changed ids are the newest (the tail of the key range), as in an incremental feed. The
PostgreSQL schemas are dropped before and after the bench (kept with `--workdir`). The
machine should be otherwise idle: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DESTINATIONS = ("delta", "postgres", "duckdb")
STEPS = ("full", "merge", "same")
STEP_NAMES = {"full": "full load", "merge": "2% merge", "same": "no change"}
OURS_SCHEMA, DLT_SCHEMA = "bench_dest", "bench_dest_dlt"
WARMUP = "_warmup"
# Every PostgreSQL schema the bench makes (dlt merges through a `<dataset>_staging` one).
SCHEMAS = [
    OURS_SCHEMA,
    OURS_SCHEMA + WARMUP,
    DLT_SCHEMA,
    f"{DLT_SCHEMA}_staging",
    DLT_SCHEMA + WARMUP,
    f"{DLT_SCHEMA}{WARMUP}_staging",
]
TABLE = "events"
FILE_ROWS = 100_000
WARMUP_ROWS = 100
RSS_TARGET_MIB = 500
# The line a `--one` subprocess prints its measurement on: this mark, then JSON.
RESULT_MARK = "RESULT "


# --- the data -------------------------------------------------------------------------------


def step_files(work: Path, step: str) -> list[str]:
    """The batch files of a step; "warmup" gives the throwaway full load and merge, in order."""
    folder = {"full": "batches", "merge": "changes", "same": "same", "warmup": "warmup"}[step]
    return sorted(str(p) for p in (work / "input" / folder).glob("*.parquet"))


def generate(work: Path, rows: int) -> None:
    """The full dataset as 100,000-row files, the 2 % change batch and the unchanged batch."""
    from datetime import UTC, datetime

    import polars as pl

    def frame(start: int, stop: int) -> pl.DataFrame:
        ids = pl.int_range(start, stop, eager=True, dtype=pl.Int64).alias("id")
        return pl.DataFrame(ids).with_columns(
            name=pl.format("customer-{}", pl.col("id")),
            amount=(pl.col("id") * 7919 % 100_000) / 100,
            created_at=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)) + pl.duration(seconds=pl.col("id")),
            active=pl.col("id") % 3 == 0,
            qty=(pl.col("id") % 1000).cast(pl.Int32),
        )

    def changed(start: int, stop: int) -> pl.DataFrame:
        return frame(start, stop).with_columns(amount=pl.col("amount") + 1.5)

    shutil.rmtree(work / "input", ignore_errors=True)
    folders = {f: work / "input" / f for f in ("batches", "changes", "same", "warmup")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for index, start in enumerate(range(0, rows, FILE_ROWS)):
        frame(start, min(start + FILE_ROWS, rows)).write_parquet(
            folders["batches"] / f"part-{index:05d}.parquet"
        )
    one = rows // 100
    pl.concat([changed(rows - one, rows), frame(rows, rows + one)]).write_parquet(
        folders["changes"] / "changes.parquet"
    )
    frame(rows - 3 * one, rows - one).reverse().write_parquet(folders["same"] / "same.parquet")
    half = WARMUP_ROWS // 2
    frame(0, WARMUP_ROWS).write_parquet(folders["warmup"] / "0-full.parquet")
    changed(half, WARMUP_ROWS + half).write_parquet(folders["warmup"] / "1-merge.parquet")


# --- one measurement, in its own process -----------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak RSS (and its children's, should a library fork), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def delta_state(uri: str) -> tuple[int, int]:
    """A Delta table's version and number of files; (-1, 0) when there is no table yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return -1, 0
    table = DeltaTable(uri)
    return table.version(), len(table.file_uris())


def delta_commit(uri: str, before: tuple[int, int]) -> dict[str, Any]:
    """What a load did to a Delta table, from its log (`before`: `delta_state` before it)."""
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    facts: dict[str, Any] = {
        "files_before": before[1],
        "files_total": len(table.file_uris()),
        "table_rows": table.count(),
    }
    if table.version() == before[0]:
        facts["commit"] = "none"
        return facts
    entry = table.history(limit=1)[0]
    metrics = entry.get("operationMetrics") or {}
    facts["commit"] = entry.get("operation")
    if entry.get("operation") == "MERGE":
        facts["files_added"] = metrics.get("num_target_files_added")
        facts["files_removed"] = metrics.get("num_target_files_removed")
        facts["output_rows"] = metrics.get("num_output_rows")
        facts["log_inserted"] = metrics.get("num_target_rows_inserted")
        facts["log_updated"] = metrics.get("num_target_rows_updated")
    else:
        facts["files_added"] = metrics.get("num_added_files")
        facts["files_removed"] = metrics.get("num_removed_files", 0)
        facts["output_rows"] = metrics.get("num_added_rows")
    return facts


Loader = Callable[[list[str], str], tuple[float, dict[str, Any]]]


def measure_in_process(
    loader: Loader, reset: Callable[[str], None], step: str, work: Path
) -> dict[str, Any]:
    """Warm up on throwaway targets, then time `loader` on the step's batch."""
    warmup = step_files(work, "warmup")
    reset(WARMUP)
    loader(warmup[:1], WARMUP)
    if step != "full":
        loader(warmup[1:], WARMUP)
    if step == "full":
        reset("")
    base = peak_rss_mib()
    seconds, facts = loader(step_files(work, step), "")
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "base_mib": base, **facts}


def _ours(destination: str, step: str, work: Path) -> dict[str, Any]:
    """One load through the merge action's code path; the measurement."""
    sys.path.insert(0, str(REPO))
    from agents.data_merger import dataset
    from agents.data_merger.destinations import LoadRequest, delta, postgres
    from agents.data_merger.destinations import duckdb as duckdb_file
    from agents.data_merger.loading import fingerprint, prepare
    from agents.data_merger.merging import MergeSpec

    spec = MergeSpec("merge", ["id"], None, True, None)
    scratch = work / "scratch"
    scratch.mkdir(exist_ok=True)

    def delta_uri(suffix: str) -> str:
        return str(work / "targets" / f"ours{suffix}-delta")

    def duckdb_path(suffix: str) -> Path:
        return work / "targets" / f"ours{suffix}.duckdb"

    def reset(suffix: str) -> None:
        if destination == "delta":
            shutil.rmtree(delta_uri(suffix), ignore_errors=True)
        elif destination == "duckdb":
            for stale in (duckdb_path(suffix), duckdb_path(suffix).with_suffix(".duckdb.wal")):
                stale.unlink(missing_ok=True)
        else:
            drop_postgres_schemas([OURS_SCHEMA + suffix])

    def request(locations: list[str], work_dir: str) -> LoadRequest:
        batch, deletes = prepare(locations, spec, work_dir)
        return LoadRequest(
            "bench", batch, deletes, spec, fingerprint(locations, spec), workdir=work_dir
        )

    def counts(result: dict[str, Any]) -> dict[str, Any]:
        names = ("written", "inserted", "updated", "unchanged", "replayed")
        return {"table_rows": result.get("rows"), **{n: result.get(n) for n in names}}

    def load(locations: list[str], suffix: str) -> tuple[float, dict[str, Any]]:
        if destination == "delta":
            uri = delta_uri(suffix)
            before = delta_state(uri)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                result = delta.load(request(locations, tmp), uri, None)
            seconds = time.perf_counter() - started
            return seconds, {**counts(result), **delta_commit(uri, before)}
        if destination == "duckdb":
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                result = duckdb_file.load(request(locations, tmp), str(duckdb_path(suffix)), TABLE)
            return time.perf_counter() - started, counts(result)
        seconds, result = asyncio.run(load_postgres(locations, OURS_SCHEMA + suffix))
        return seconds, counts(result)

    async def load_postgres(locations: list[str], schema: str) -> tuple[float, dict[str, Any]]:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(DATABASE_URL)
        try:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                # As the action: the batch is prepared in a thread, then loaded under the
                # table's advisory lock in one transaction, committed when the block ends.
                loaded = await asyncio.to_thread(request, locations, tmp)
                async with dataset.locked(engine, f"table:{schema}.{TABLE}") as conn:
                    result = await postgres.load(conn, loaded, table=TABLE, schema=schema)
            return time.perf_counter() - started, result
        finally:
            await engine.dispose()

    return measure_in_process(load, reset, step, work)


def _plain_postgres_url() -> str:
    """DATABASE_URL without SQLAlchemy's driver part, as libpq (and dlt) spell it.

    dlt insists on a password; under trust authentication the server ignores it.
    """
    parts = urlsplit(DATABASE_URL)
    user, at, host = parts.netloc.rpartition("@")
    netloc = f"{user}:unused@{host}" if at and ":" not in user else parts.netloc
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0], netloc=netloc))


def _dlt(destination: str, step: str, work: Path) -> dict[str, Any]:
    """The same step with dlt (run by the dlt venv's Python); the measurement."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    import pyarrow.parquet as pq

    pipelines = work / "dlt-pipelines"

    def names(suffix: str) -> tuple[str, Path, Path]:
        """The pipeline's name, the filesystem destination's folder, the duckdb file."""
        targets = work / "targets"
        fs_root, duckdb_path = targets / f"dlt{suffix}-fs", targets / f"dlt{suffix}.duckdb"
        return f"bench_dest_{destination}{suffix}", fs_root, duckdb_path

    def reset(suffix: str) -> None:
        """No earlier files, tables or pipeline state: the next load makes a new table."""
        name, fs_root, duckdb_path = names(suffix)
        shutil.rmtree(pipelines / name, ignore_errors=True)
        if destination == "delta":
            shutil.rmtree(fs_root, ignore_errors=True)
        elif destination == "duckdb":
            duckdb_path.unlink(missing_ok=True)
        else:
            drop_postgres_schemas([DLT_SCHEMA + suffix, f"{DLT_SCHEMA}{suffix}_staging"])

    def load(files: list[str], suffix: str) -> tuple[float, dict[str, Any]]:
        name, fs_root, duckdb_path = names(suffix)
        if destination == "delta":
            target: Any = dlt.destinations.filesystem(bucket_url=fs_root.as_uri())
        elif destination == "duckdb":
            target = dlt.destinations.duckdb(str(duckdb_path))
        else:
            target = dlt.destinations.postgres(credentials=_plain_postgres_url())

        # Options that only some destinations take, passed only to those.
        hints: dict[str, Any] = {"table_format": "delta"} if destination == "delta" else {}
        run_options: dict[str, Any] = (
            {"loader_file_format": "csv"} if destination == "postgres" else {}
        )

        @dlt.resource(
            name=TABLE,
            primary_key="id",
            write_disposition={"disposition": "merge", "strategy": "upsert"},
            **hints,
        )
        def events() -> Any:
            for path in files:
                yield pq.read_table(path)

        pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=target,
            dataset_name=DLT_SCHEMA + suffix,
            pipelines_dir=str(pipelines),
        )
        delta_uri = str(fs_root / (DLT_SCHEMA + suffix) / TABLE)
        before = delta_state(delta_uri) if destination == "delta" else (-1, 0)
        started = time.perf_counter()
        pipeline.run(events(), **run_options)
        seconds = time.perf_counter() - started
        trace = pipeline.last_trace
        assert trace is not None and trace.last_normalize_info is not None, "dlt ran nothing"
        facts: dict[str, Any] = {"written": trace.last_normalize_info.row_counts.get(TABLE, 0)}
        if destination == "delta":
            facts.update(delta_commit(delta_uri, before))
            facts["inserted"], facts["updated"] = (
                facts.get("log_inserted"),
                facts.get("log_updated"),
            )
        else:
            with pipeline.sql_client() as client:
                counted = client.execute_sql(f"SELECT count(*) FROM {TABLE}")
                assert counted is not None
                facts["table_rows"] = counted[0][0]
        return seconds, facts

    return measure_in_process(load, reset, step, work)


def drop_postgres_schemas(schemas: list[str]) -> None:
    """DROP SCHEMA ... CASCADE, with whichever driver this venv has (psycopg2 in dlt's)."""
    try:
        import psycopg2
    except ImportError:
        asyncio.run(_drop_with_sqlalchemy(schemas))
        return
    conn = psycopg2.connect(_plain_postgres_url())
    try:
        with conn, conn.cursor() as cursor:
            for schema in schemas:
                cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        conn.close()


async def _drop_with_sqlalchemy(schemas: list[str]) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(DATABASE_URL)
    try:
        async with engine.begin() as conn:
            for schema in schemas:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        await engine.dispose()


def one(tool: str, destination: str, step: str, work: Path) -> None:
    measure = _ours if tool == "ours" else _dlt
    measured = measure(destination, step, work)
    print(RESULT_MARK + json.dumps(measured, default=str), flush=True)


# --- the bench -------------------------------------------------------------------------------


@dataclass
class Measurement:
    tool: str
    destination: str
    step: str
    batch_rows: int
    facts: dict[str, Any]
    error: str | None = None

    @property
    def seconds(self) -> float:
        return float(self.facts["seconds"])


def measure(
    python: str, tool: str, destination: str, step: str, work: Path, batch_rows: int
) -> Measurement:
    """Run one `--one` subprocess; its measurement (or why it failed)."""
    command = [python, str(SCRIPT), "--one", tool, "--destination", destination]
    command += ["--step", step, "--workdir", str(work)]
    print(f"  {tool} {destination} {STEP_NAMES[step]} ...", end=" ", flush=True)
    # cwd: dlt reads `.dlt/` config from the working folder; the bench's own has none.
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"failed: {tail}")
        return Measurement(tool, destination, step, batch_rows, {}, error=tail)
    facts = json.loads(lines[-1][len(RESULT_MARK) :])
    print(f"{facts['seconds']:.2f} s")
    return Measurement(tool, destination, step, batch_rows, facts)


def best_of(runs: list[Measurement]) -> list[Measurement]:
    """One measurement per tool, destination and step: the fastest run, with the highest
    peak RSS of all its runs (a shared machine slows single runs at random, never speeds
    them up); a failure only when every run failed."""
    grouped: dict[tuple[str, str, str], list[Measurement]] = {}
    for m in runs:
        grouped.setdefault((m.tool, m.destination, m.step), []).append(m)
    results = []
    for group in grouped.values():
        done = [m for m in group if m.error is None]
        if not done:
            results.append(group[0])
            continue
        fastest = min(done, key=lambda m: m.seconds)
        peak = max(m.facts["peak_mib"] for m in done)
        results.append(
            Measurement(
                fastest.tool,
                fastest.destination,
                fastest.step,
                fastest.batch_rows,
                {**fastest.facts, "peak_mib": peak},
            )
        )
    return results


def _number(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _files(facts: dict[str, Any]) -> str:
    """Delta: the files the commit removed and added, of those the table had before."""
    if "commit" not in facts:
        return ""
    if facts["commit"] == "none":
        return f"no commit ({facts['files_total']} files)"
    removed, added = facts.get("files_removed") or 0, facts.get("files_added") or 0
    return f"-{removed}/+{added} of {facts['files_before']}"


def print_table(results: list[Measurement], rows: int) -> None:
    header = (
        f"{'tool':<5}{'dest':<9}{'step':<10}{'seconds':>8}{'rows/s':>11}{'peak MiB':>9}"
        f"{'base MiB':>9}{'written':>11}{'inserted':>11}{'updated':>11}{'unchanged':>11}"
        f"{'table rows':>12}{'rewritten':>11}  delta files"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        lead = f"{m.tool:<5}{m.destination:<9}{STEP_NAMES[m.step]:<10}"
        if m.error is not None:
            print(f"{lead} failed: {m.error}")
            continue
        f = m.facts
        print(
            f"{lead}{m.seconds:8.2f}{m.batch_rows / m.seconds:11,.0f}{f['peak_mib']:9.0f}"
            f"{f['base_mib']:9.0f}{_number(f.get('written')):>11}"
            f"{_number(f.get('inserted')):>11}{_number(f.get('updated')):>11}"
            f"{_number(f.get('unchanged')):>11}{_number(f.get('table_rows')):>12}"
            f"{_number(f.get('output_rows')):>11}  {_files(f)}"
        )
        expected = rows if m.step == "full" else rows + rows // 100
        if f.get("table_rows") is not None and int(f["table_rows"]) != expected:
            print(f"  ^ WRONG: the table should hold {expected:,} rows")
    print(
        "rows/s: batch rows / seconds; written/inserted/updated/unchanged: what the load says "
        "(dlt: rows it loaded; Delta: its log's inserted/updated); rewritten: rows the Delta "
        "commit wrote, copies of untouched rows in rewritten files included"
    )


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_targets(results: list[Measurement]) -> None:
    found = {(m.tool, m.destination, m.step): m for m in results if m.error is None}
    print("\ntargets")
    for destination in DESTINATIONS:
        for tool in ("ours", "dlt"):
            full = found.get((tool, destination, "full"))
            merge = found.get((tool, destination, "merge"))
            if full is None or merge is None:
                continue
            ratio = merge.seconds / full.seconds
            target = ""
            if tool == "ours" and destination != "duckdb":
                target = f"(target <= 10 %) {_verdict(ratio <= 0.10)}"
            print(
                f"  {tool:<4} {destination:<8} 2% merge / full load: {merge.seconds:.2f} s / "
                f"{full.seconds:.2f} s = {ratio:.1%} {target}"
            )
    ours, theirs = found.get(("ours", "delta", "merge")), found.get(("dlt", "delta", "merge"))
    if ours is not None and theirs is not None:
        print(
            f"  2% Delta merge, ours vs dlt: {ours.seconds:.2f} s vs {theirs.seconds:.2f} s "
            f"(dlt takes {theirs.seconds / ours.seconds:.2f}x ours) "
            f"(target: ours at least as fast) {_verdict(ours.seconds <= theirs.seconds)}"
        )
    for tool in ("ours", "dlt"):
        full = found.get((tool, "postgres", "full"))
        if full is not None:
            rate = full.batch_rows / full.seconds
            target = f"(target >= 200,000) {_verdict(rate >= 200_000)}" if tool == "ours" else ""
            print(f"  {tool:<4} PostgreSQL full load: {rate:,.0f} rows/s {target}")
    for tool in ("ours", "dlt"):
        loads = [m for m in found.values() if m.tool == tool]
        if not loads:
            continue
        worst = max(loads, key=lambda m: m.facts["peak_mib"])
        line = (
            f"  {tool:<4} peak RSS: highest {worst.facts['peak_mib']:.0f} MiB "
            f"({worst.destination} {STEP_NAMES[worst.step]})"
        )
        if tool == "ours":
            over = [
                f"{m.destination} {STEP_NAMES[m.step]} {m.facts['peak_mib']:.0f} MiB"
                for m in loads
                if m.facts["peak_mib"] > RSS_TARGET_MIB
            ]
            line += f" (target <= {RSS_TARGET_MIB} MB, every load) {_verdict(not over)}"
            line += f": over it {', '.join(over)}" if over else ""
        print(line)
    print("  nothing-changed merge (2 % of the rows, all already there as they are):")
    for m in results:
        if m.step != "same" or m.error is not None:
            continue
        f = m.facts
        what = f"written {_number(f.get('written'))}"
        if "commit" in f:
            what += f"; Delta: {_files(f)}"
            if f.get("output_rows"):
                what += f", {_number(f['output_rows'])} rows rewritten"
        print(f"    {m.tool:<4} {m.destination:<8} {m.seconds:6.2f} s, {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the full load")
    parser.add_argument("--dlt", metavar="PYTHON", help="a Python with dlt installed")
    parser.add_argument(
        "--only", default=",".join(DESTINATIONS), help="destinations, comma-separated"
    )
    parser.add_argument("--workdir", type=Path, help="use and keep this folder (else a temp)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every sequence N times; the best time counts"
    )
    parser.add_argument("--one", choices=("ours", "dlt"), help="measure one load (internal)")
    parser.add_argument("--destination", choices=DESTINATIONS, help="with --one")
    parser.add_argument("--step", choices=STEPS, help="with --one")
    args = parser.parse_args()
    if args.one:
        if args.workdir is None or args.destination is None or args.step is None:
            parser.error("--one needs --destination, --step and --workdir")
        one(args.one, args.destination, args.step, args.workdir.resolve())
        return
    only = [d.strip() for d in args.only.split(",") if d.strip()]
    unknown = sorted(set(only) - set(DESTINATIONS))
    if unknown:
        parser.error(f"unknown destinations: {', '.join(unknown)}")
    if args.rows < 10_000:
        parser.error("--rows must be at least 10,000")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    tools = [("ours", sys.executable)]
    if args.dlt:
        version = subprocess.run(
            [args.dlt, "-c", "import dlt; print(dlt.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if version.returncode != 0:
            parser.error(f"{args.dlt} cannot import dlt: {version.stderr.strip()}")
        tools.append(("dlt", args.dlt))
        print(f"dlt {version.stdout.strip()} ({args.dlt})")

    keep = args.workdir is not None
    work = args.workdir.resolve() if keep else Path(tempfile.mkdtemp(prefix="bench-dest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if "postgres" in only:
            drop_postgres_schemas(SCHEMAS)
        print(f"generating {args.rows:,} rows in {work} ...", flush=True)
        generate(work, args.rows)
        two_percent = 2 * (args.rows // 100)
        sizes = {"full": args.rows, "merge": two_percent, "same": two_percent}
        runs = [
            measure(python, tool, destination, step, work, sizes[step])
            for _ in range(args.repeat)
            for destination in only
            for tool, python in tools
            for step in STEPS
        ]
        results = best_of(runs)
        print(
            f"\n{args.rows:,} rows; each load in its own process; seconds: the best of "
            f"{args.repeat} run(s), peak RSS: the highest\n"
        )
        print_table(results, args.rows)
        print_targets(results)
    finally:
        if not keep:
            if "postgres" in only:
                drop_postgres_schemas(SCHEMAS)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
