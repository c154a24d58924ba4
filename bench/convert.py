"""Benchmark: CSV -> Parquet through the data-converter agent versus plain polars.

Generates a CSV of `--mb` megabytes in a temporary folder, starts the converter agent with
uvicorn in a subprocess, converts the file through its HTTP API, then does the same conversion
with plain polars in another subprocess: `scan_csv` + `str.to_datetime` with the date format
written by hand + `sink_parquet`, the same output the agent's inference produces (two more
plain variants are printed for reference). Prints both throughputs, their ratio and the
peak RSS (VmHWM) of each process. Targets: agent >= 80 % of plain polars, agent peak RSS
<= 500 MB.

    uv run python bench/convert.py --mb 200

DATABASE_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test) is handed to the
agent; the benchmark sends no Idempotency-Key, so the database is only used by /health.
The machine should be otherwise idle: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import polars as pl

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-service-token"
CHUNK_ROWS = 500_000
NAMES = ["Ada", "Grace", "Ken", "Barbara", "Guido", "Dennis", "Alan", "Margaret"]

# Plain polars, three ways: "format" is what an engineer who knows the file writes by hand
# (the same output as the agent: typed timestamps), "infer" lets polars guess the dates,
# "text" leaves them as text (less work than the agent does; for reference).
PLAIN_POLARS = """
import sys, time
import polars as pl
source, target, mode = sys.argv[1], sys.argv[2], sys.argv[3]
started = time.perf_counter()
frame = pl.scan_csv(source, try_parse_dates=mode == "infer", infer_schema_length=10_000)
if mode == "format":
    frame = frame.with_columns(
        pl.col("created_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC")
    )
frame.sink_parquet(target)
print(time.perf_counter() - started)
"""


def generate_csv(path: Path, megabytes: int) -> int:
    """Write an orders-like CSV of about `megabytes` MB; its size in bytes."""
    target = megabytes * 1024 * 1024
    offset = 0
    with path.open("wb") as handle:
        header = True
        while handle.tell() < target:
            ids = pl.int_range(offset, offset + CHUNK_ROWS, eager=True, dtype=pl.Int64)
            chunk = pl.DataFrame({"order_id": ids}).with_columns(
                customer=pl.lit(pl.Series(NAMES)).gather(pl.col("order_id") % len(NAMES)),
                email=pl.format("user{}@example.com", pl.col("order_id")),
                amount=(pl.col("order_id") * 7919 % 100_000) / 100,
                quantity=pl.col("order_id") % 17,
                paid=pl.col("order_id") % 3 == 0,
                created_at=pl.format(
                    "2026-{}-{}T{}:{}:00Z",
                    (pl.col("order_id") % 12 + 1).cast(pl.String).str.zfill(2),
                    (pl.col("order_id") % 28 + 1).cast(pl.String).str.zfill(2),
                    (pl.col("order_id") % 24).cast(pl.String).str.zfill(2),
                    (pl.col("order_id") % 60).cast(pl.String).str.zfill(2),
                ),
            )
            chunk.write_csv(handle, include_header=header)
            header = False
            offset += CHUNK_ROWS
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def start_agent(workdir: Path, port: int, database_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATA_ROOT": str(workdir / "data"),
        "AGENT_ALLOWED_ROOTS": json.dumps([str(workdir)]),
        "SERVICE_TOKEN": TOKEN,
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "agents.data_converter.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=REPO, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the agent exited with code {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the agent did not start within 60 s")


def via_agent(source: Path, port: int) -> tuple[float, dict]:
    started = time.perf_counter()
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/convert",
        json={"files": [str(source)], "format": "auto"},
        headers={"Authorization": f"Bearer {TOKEN}", "X-Run-Id": "bench", "X-Step-Id": "convert"},
        timeout=None,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()


def via_polars(source: Path, target: Path, mode: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of plain polars converting `source` in a fresh process."""
    process = subprocess.Popen(
        [sys.executable, "-c", PLAIN_POLARS, str(source), str(target), mode],
        stdout=subprocess.PIPE,
    )
    # Sample VmHWM just before the process ends: poll until it exits.
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(FileNotFoundError, RuntimeError, ProcessLookupError):
            peak = max(peak, peak_rss_mb(process.pid))
        time.sleep(0.05)
    assert process.stdout is not None
    output = process.stdout.read().decode().strip()
    if process.returncode != 0:
        raise RuntimeError(f"plain polars failed with code {process.returncode}")
    return float(output.splitlines()[-1]), peak


def fmt(times: list[float]) -> str:
    """Run times as text."""
    return ", ".join(f"{t:.2f} s" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the generated CSV in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        source = workdir / "orders.csv"
        print(f"generating {args.mb} MB of CSV in {workdir} ...", flush=True)
        size = generate_csv(source, args.mb)
        size_mb = size / 1024 / 1024

        port = free_port()
        agent = start_agent(workdir, port, args.database_url)
        agent_times: list[float] = []
        polars_times: list[float] = []
        polars_rss = 0.0
        try:
            baseline_rss = peak_rss_mb(agent.pid)
            # Interleaved, best of N: other work on the machine slows single runs at random.
            for _ in range(args.repeat):
                agent_s, result = via_agent(source, port)
                agent_times.append(agent_s)
                polars_s, rss = via_polars(source, workdir / "plain.parquet", "format")
                polars_times.append(polars_s)
                polars_rss = max(polars_rss, rss)
            agent_rss = peak_rss_mb(agent.pid)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
        agent_s, polars_s = min(agent_times), min(polars_times)
        infer_s, _ = via_polars(source, workdir / "infer.parquet", "infer")
        text_s, _ = via_polars(source, workdir / "text.parquet", "text")

        plain_rows = pl.scan_parquet(workdir / "plain.parquet").select(pl.len()).collect().item()
        agent_file = result["files"][0]
        if agent_file["rows"] != plain_rows:
            raise SystemExit(f"row counts differ: agent {agent_file['rows']}, polars {plain_rows}")
        agent_mbps, polars_mbps = size_mb / agent_s, size_mb / polars_s
        ratio = agent_mbps / polars_mbps
        print(f"input:         {size_mb:,.0f} MB, {plain_rows:,} rows")
        print(f"agent schema:  {agent_file['schema']}")
        print(f"agent:         {agent_s:6.2f} s  {agent_mbps:7.1f} MB/s")
        print(f"plain polars:  {polars_s:6.2f} s  {polars_mbps:7.1f} MB/s  (hand-written format)")
        print(f"  try_parse:   {infer_s:6.2f} s  {size_mb / infer_s:7.1f} MB/s  (polars guesses)")
        print(f"  text only:   {text_s:6.2f} s  {size_mb / text_s:7.1f} MB/s  (dates left text)")
        print(f"runs:          agent {fmt(agent_times)}; plain polars {fmt(polars_times)}")
        print(f"ratio:         {ratio:.0%} of plain polars (target >= 80%)")
        print(
            f"agent peak RSS: {agent_rss:.0f} MB (idle {baseline_rss:.0f} MB; target <= 500 MB); "
            f"plain polars peak RSS: {polars_rss:.0f} MB"
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
