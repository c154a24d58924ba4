"""A backlog drained: N runs (default 10,000) of the 6-step diamond submitted while the engine
is frozen (SIGSTOP), then the engine resumed and the backlog drained.

    uv run python bench/backlog.py [--runs 10000]

Prints runs/s in each tenth of the drain (by the runs' own finish times) and the last
tenth's rate over the first's: a claim whose cost grows with the queue, or with the finished
runs behind it, shows as a drain that slows down. Uses DATABASE_URL / REDIS_URL when set,
else embedded servers under var/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import (  # noqa: E402
    bench_env,
    connect,
    drop,
    pause,
    submit_all,
    vacuum,
    wait_done,
)
from launcher.platform import running_platform  # noqa: E402
from launcher.processes import ROOT, Ports  # noqa: E402


def decile_rates(finished: list[datetime], started: datetime) -> list[float]:
    """Runs/s in each tenth of the runs, ordered by finish time, from the drain's start."""
    ordered = sorted(finished)
    n = len(ordered)
    rates = []
    previous = started
    for k in range(1, 11):
        end = ordered[max(0, k * n // 10 - 1)]
        count = k * n // 10 - (k - 1) * n // 10
        span = (end - previous).total_seconds()
        rates.append(count / span if span > 0 else float("inf"))
        previous = end
    return rates


async def finish_times(env: dict[str, str], run_ids: list[str]) -> tuple[datetime, list[datetime]]:
    """The first claim of the backlog (the drain's start) and every run's finish time."""
    conn = await connect(env)
    try:
        started = await conn.fetchval(
            "SELECT min(started_at) FROM step_runs WHERE run_id = ANY($1::uuid[])", run_ids
        )
        rows = await conn.fetch(
            "SELECT finished_at, status FROM workflow_runs WHERE id = ANY($1::uuid[])", run_ids
        )
    finally:
        await conn.close()
    failed = [r for r in rows if r["status"] != "SUCCEEDED"]
    if failed or len(rows) != len(run_ids):
        raise SystemExit(f"{len(failed)} runs did not succeed, {len(run_ids) - len(rows)} missing")
    return started, [r["finished_at"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--submit-concurrency", type=int, default=32)
    args = parser.parse_args()
    env = bench_env()
    with running_platform(
        ROOT / "var" / "bench", ports=Ports.random(), say=lambda *_: None, extra_env=env
    ) as platform:
        engine = platform.services["workflow-engine"]
        try:
            asyncio.run(vacuum(platform.env))
            pause(engine, True)
            submitted = time.perf_counter()
            run_ids = asyncio.run(
                submit_all(platform.controller_url, args.runs, args.submit_concurrency)
            )
            submit_s = time.perf_counter() - submitted
            pause(engine, False)
            asyncio.run(wait_done(platform.env, timeout_s=3600))
            started, finished = asyncio.run(finish_times(platform.env, run_ids))
        finally:
            for service in platform.services.values():
                service.stop()
            asyncio.run(drop(platform.env, env["DB_SCHEMA"]))
    rates = decile_rates(finished, started)
    total_s = (max(finished) - started).total_seconds()
    print(f"backlog of {args.runs} runs (6-step diamond, no-op agents), one engine")
    print(f"  submitted with the engine frozen: {args.runs / submit_s:.0f} runs/s")
    print(f"  drained in {total_s:.1f} s: {args.runs / total_s:.0f} runs/s overall")
    for k, rate in enumerate(rates, 1):
        print(f"  decile {k:>2}: {rate:8.0f} runs/s")
    print(f"last decile / first decile: {rates[-1] / rates[0]:.2f}")


if __name__ == "__main__":
    main()
