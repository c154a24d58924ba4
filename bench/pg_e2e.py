"""Benchmark: a PostgreSQL table -> a Parquet dataset through the whole platform (issue 14).

Starts the platform on free ports (launcher.platform: controller, engine, agents as uvicorn
processes, the database and Redis of DATABASE_URL / REDIS_URL or embedded ones), makes
`bench_ingest.events` as bench/ingest.py does, and submits the `standard` workflow for it
(`destination: parquet`, `write_disposition: append`, `chunk_size` 100,000 rows like dlt's
below unless `--chunk-size` says otherwise, a new dataset per run), timing each run from
submit to `SUCCEEDED` on the client and printing every step's own duration. Each trial runs
two variants, alternating: `as-is` (the registered `standard`: the collector's chunks are
published by the converter byte for byte, agents.data_converter.reuse) and `rewrite` (the
same spec inline with `rewrite_parquet: true` on convert: every chunk decoded and
re-encoded, the converter's path before issue 14 apart from its faster inference). Every
run's rows are checked against the table (the rows collect and convert report).

With `--dlt PYTHON` (a venv with dlt and connectorx, see bench/ingest.py), each trial also
loads the table with dlt's sql_table (connectorx backend, filesystem Parquet), timed from the
pipeline's start to its end, in the same alternation.

    uv run python bench/pg_e2e.py --rows 2000000 --repeat 3 --dlt /tmp/dltvenv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import DLT_SCRIPT, SCHEMA, URL, make_table  # noqa: E402
from launcher.platform import running_platform  # noqa: E402
from launcher.processes import Ports  # noqa: E402

API_KEY = "dev-api-key"
STEPS = ("connect", "collect", "convert", "quality", "merge", "commit")


def specs() -> dict[str, dict[str, Any] | None]:
    """The variants: None submits the registered `standard`, a dict that spec inline."""
    standard = yaml.safe_load((REPO / "workflows" / "standard.yaml").read_text())
    rewrite = copy.deepcopy(standard)
    rewrite["name"] = "standard-rewrite"
    convert = next(step for step in rewrite["steps"] if step["id"] == "convert")
    convert["params"]["rewrite_parquet"] = True
    return {"as-is": None, "rewrite": rewrite}


def one_run(
    api: httpx.Client, spec: dict[str, Any] | None, rows: int, chunk_size: int | None
) -> dict[str, Any]:
    """Submit one run, wait for it; its wall time and step durations."""
    inputs: dict[str, Any] = {
        "source": {"kind": "postgres", "url": URL, "db_schema": SCHEMA, "table": "events"},
        "dataset": f"bench_pg_{uuid.uuid4().hex[:8]}",
        "primary_key": [],
        "write_disposition": "append",
        "destination": {"kind": "parquet"},
    }
    if chunk_size is not None:
        inputs["chunk_size"] = chunk_size
    body: dict[str, Any] = {"inputs": inputs}
    body.update({"spec": spec} if spec is not None else {"workflow": "standard"})
    started = time.perf_counter()
    response = api.post("/coordinate", json=body)
    response.raise_for_status()
    run_id = response.json()["run_id"]
    while True:
        run = api.get(f"/workflows/{run_id}").json()
        if run["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"):
            break
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if run["status"] != "SUCCEEDED":
        raise SystemExit(f"run {run_id} ended {run['status']}: {run}")
    steps = {s["step_id"]: s for s in run["steps"]}
    for step in ("collect", "convert"):
        assert steps[step]["output"]["rows"] == rows, (step, steps[step]["output"]["rows"])
    # Which convert outputs kept the collector's bytes (pyarrow's writer, not polars').
    outputs = steps["convert"]["output"]["files"]
    kept = sum(pq.read_metadata(f["uri"]).created_by.startswith("parquet-cpp") for f in outputs)
    return {
        "wall": wall,
        "kept": f"{kept}/{len(outputs)}",
        "steps": {k: (steps[k]["duration_ms"] or 0) / 1000 for k in STEPS if k in steps},
    }


def dlt_run(python: str, workdir: str) -> float:
    """Seconds dlt's sql_table (connectorx) takes to load the table into Parquet files."""
    out = f"{workdir}/dlt-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [python, "-c", DLT_SCRIPT, URL, SCHEMA, out, "connectorx"],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.split()[-2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating trials per variant")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=100_000,
        help="standard's chunk_size input (dlt's chunk_size here is 100,000; 0: the default)",
    )
    parser.add_argument("--dlt", metavar="PYTHON", help="also time dlt (connectorx) each trial")
    args = parser.parse_args()
    asyncio.run(make_table(args.rows))
    variants = specs()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    dlt_s: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-pg-e2e-") as var,
        running_platform(
            Path(var), ports=Ports.random(), extra_env={"CONTROLLER_SEED_SCHEDULES": "false"}
        ) as platform,
        httpx.Client(
            base_url=platform.controller_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
        ) as api,
    ):
        chunk = args.chunk_size or None
        one_run(api, None, args.rows, chunk)  # warm-up (imports, model loads), not counted
        for trial in range(args.repeat):
            for name, spec in variants.items():
                result = one_run(api, spec, args.rows, chunk)
                results[name].append(result)
                steps = ", ".join(f"{k} {v:.2f}" for k, v in result["steps"].items())
                print(
                    f"trial {trial + 1} {name:7s}: {result['wall']:.2f} s ="
                    f" {args.rows / result['wall']:,.0f} rows/s; steps (s): {steps};"
                    f" convert outputs published as collected: {result['kept']}",
                    flush=True,
                )
            if args.dlt:
                dlt_s.append(dlt_run(args.dlt, var))
                print(
                    f"trial {trial + 1} dlt connectorx: {dlt_s[-1]:.2f} s ="
                    f" {args.rows / dlt_s[-1]:,.0f} rows/s",
                    flush=True,
                )
    for name, runs in results.items():
        walls = [r["wall"] for r in runs]
        converts = [r["steps"]["convert"] for r in runs]
        median = statistics.median(walls)
        print(
            f"{name:7s}: submit -> SUCCEEDED {', '.join(f'{w:.2f}' for w in walls)} s, median"
            f" {median:.2f} s = {args.rows / median:,.0f} rows/s; convert step"
            f" {', '.join(f'{c:.2f}' for c in converts)} s"
        )
    if dlt_s:
        median = statistics.median(dlt_s)
        print(
            f"dlt connectorx: {', '.join(f'{t:.2f}' for t in dlt_s)} s, median {median:.2f} s ="
            f" {args.rows / median:,.0f} rows/s"
        )


if __name__ == "__main__":
    main()
