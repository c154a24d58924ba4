"""Throughput of the whole platform: N runs of a 6-step diamond of no-op agent actions,
submitted through /coordinate, executed by 1..K engine replicas against the real agents.

    uv run python bench/throughput.py --runs 300 --engines 1
    uv run python bench/throughput.py --runs 300 --engines 2

Prints runs/s, steps/s, and p50/p99 of submit→first step and of step-to-step dispatch
overhead (a step's claim minus the moment its last dependency's result was recorded).
With `--drain`, the engines are frozen (SIGSTOP) while the runs are submitted and resumed after:
the figures then separate the controller's submission rate from the engines' execution rate
(on two cores the controller alone can be the limit of the end-to-end figure).
Uses DATABASE_URL / REDIS_URL when set, else embedded servers under var/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.platform import running_platform  # noqa: E402
from launcher.processes import ROOT, Ports, Service, free_port  # noqa: E402
from shared.db.session import asyncpg_dsn  # noqa: E402

DIAMOND = {
    "name": "bench-diamond",
    "steps": [
        {"id": "a", "agent": "data-connector", "action": "noop"},
        {"id": "b", "agent": "data-collector", "action": "noop", "depends_on": ["a"]},
        {"id": "c", "agent": "data-converter", "action": "noop", "depends_on": ["a"]},
        {"id": "d", "agent": "data-scheduler", "action": "noop", "depends_on": ["a"]},
        {"id": "e", "agent": "data-fetch-retry", "action": "noop", "depends_on": ["a"]},
        {"id": "f", "agent": "data-merger", "action": "noop", "depends_on": ["b", "c", "d", "e"]},
    ],
}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def submit_all(base: str, runs: int, concurrency: int) -> list[str]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": "Bearer dev-api-key"}, timeout=30
    ) as api:

        async def one(i: int) -> str:
            async with limit:
                r = await api.post("/coordinate", json={"spec": DIAMOND, "inputs": {}})
                r.raise_for_status()
                return str(r.json()["run_id"])

        return await asyncio.gather(*(one(i) for i in range(runs)))


async def wait_done(dsn: str, run_ids: list[str], timeout_s: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            open_runs = await conn.fetchval(
                "SELECT count(*) FROM workflow_runs WHERE id = ANY($1::uuid[]) "
                "AND status IN ('PENDING', 'RUNNING')",
                run_ids,
            )
            if open_runs == 0:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{open_runs} runs unfinished after {timeout_s}s")
    finally:
        await conn.close()


async def measure(dsn: str, run_ids: list[str], *, executing_only: bool) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        span = await conn.fetchrow(
            "SELECT min(r.created_at) AS t0, max(r.finished_at) AS t1, count(*) AS runs, "
            "count(*) FILTER (WHERE r.status = 'SUCCEEDED') AS ok "
            "FROM workflow_runs r WHERE r.id = ANY($1::uuid[])",
            run_ids,
        )
        steps = await conn.fetchval(
            "SELECT count(*) FROM step_runs WHERE run_id = ANY($1::uuid[])", run_ids
        )
        first_claim = await conn.fetchval(
            "SELECT min(started_at) FROM step_runs WHERE run_id = ANY($1::uuid[])", run_ids
        )
        first = await conn.fetch(
            "SELECT extract(epoch FROM min(s.started_at) - r.created_at) * 1000 AS ms "
            "FROM workflow_runs r JOIN step_runs s ON s.run_id = r.id "
            "WHERE r.id = ANY($1::uuid[]) GROUP BY r.id, r.created_at",
            run_ids,
        )
        dispatch = await conn.fetch(
            "SELECT extract(epoch FROM s.started_at - max(d.finished_at)) * 1000 AS ms "
            "FROM step_runs s JOIN step_runs d ON d.run_id = s.run_id "
            "AND d.step_id = ANY(s.depends_on) AND d.map_index = -1 "
            "WHERE s.run_id = ANY($1::uuid[]) AND cardinality(s.depends_on) > 0 "
            "GROUP BY s.id, s.started_at",
            run_ids,
        )
    finally:
        await conn.close()
    # Drain mode measures from the first claim: submission happened with no engine running.
    elapsed = (span["t1"] - (first_claim if executing_only else span["t0"])).total_seconds()
    first_ms = [float(r["ms"]) for r in first]
    dispatch_ms = [float(r["ms"]) for r in dispatch]
    return {
        "runs": span["runs"],
        "succeeded": span["ok"],
        "steps": steps,
        "elapsed_s": elapsed,
        "runs_per_s": span["runs"] / elapsed,
        "steps_per_s": steps / elapsed,
        "first_step_p50_ms": statistics.median(first_ms),
        "first_step_p99_ms": pct(first_ms, 99),
        "dispatch_p50_ms": statistics.median(dispatch_ms),
        "dispatch_p99_ms": pct(dispatch_ms, 99),
    }


async def vacuum(dsn: str) -> None:
    """Clear dead rows left by earlier runs (autovacuum may be off or behind on a bench box),
    so every run of the bench starts from the same state whatever ran before it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE workflow_runs, step_runs, event_outbox")
    finally:
        await conn.close()


def pause(service: Service, frozen: bool) -> None:
    """SIGSTOP/SIGCONT a service process: its connections and state stay as they are."""
    assert service.process is not None
    service.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--submit-concurrency", type=int, default=32)
    parser.add_argument(
        "--drain", action="store_true", help="submit with engines frozen, then execute"
    )
    args = parser.parse_args()
    var = ROOT / "var" / "bench"
    quiet = {
        "CONTROLLER_SEED_SCHEDULES": "false",  # no scheduled runs inside the measurement
        # The admission caps (200 unfinished runs per workflow by default) are a policy, not
        # engine speed: lift them so every submitted run is admitted at once.
        "CONTROLLER_ORCHESTRATORS": json.dumps(
            {
                "batch_manager": {
                    "max_concurrent_runs": 1_000_000,
                    "max_concurrent_per_workflow": 1_000_000,
                },
                "ingestion_manager": {"max_concurrent_runs": 1_000_000},
            }
        ),
    }
    with running_platform(
        var, ports=Ports.random(), say=lambda *_: None, extra_env=quiet
    ) as platform:
        extra = []
        for i in range(1, args.engines):
            replica = Service(
                f"workflow-engine-{i + 1}",
                "services.workflow_engine.app",
                free_port(),
                platform.env,
                platform.log_dir / f"workflow-engine-{i + 1}.log",
            )
            replica.start()
            replica.wait_healthy()
            extra.append(replica)
        engines = [platform.services["workflow-engine"], *extra]
        try:
            dsn = asyncpg_dsn(platform.env["DATABASE_URL"])
            asyncio.run(vacuum(dsn))
            if args.drain:
                # Frozen, not stopped: the engines are started and warm when the work arrives,
                # so one replica's start-up does not eat the CPU another one is working with.
                for engine in engines:
                    pause(engine, True)
            started = time.perf_counter()
            run_ids = asyncio.run(
                submit_all(platform.controller_url, args.runs, args.submit_concurrency)
            )
            submit_s = time.perf_counter() - started
            if args.drain:
                for engine in engines:
                    pause(engine, False)
            asyncio.run(wait_done(dsn, run_ids, timeout_s=600))
            figures = asyncio.run(measure(dsn, run_ids, executing_only=args.drain))
            figures["submitted_runs_per_s"] = args.runs / submit_s
            if args.drain:  # submit→first step includes the engines' start: not a latency
                figures.pop("first_step_p50_ms")
                figures.pop("first_step_p99_ms")
        finally:
            for replica in extra:
                replica.stop()
    mode = "drain: submitted with engines frozen" if args.drain else "submitted while running"
    print(f"engines={args.engines} runs={args.runs} (6-step diamond, no-op agents; {mode})")
    for key, value in figures.items():
        print(f"  {key:<20} {value:10.2f}" if isinstance(value, float) else f"  {key:<20} {value}")
    if os.environ.get("BENCH_STRICT") and figures["succeeded"] != figures["runs"]:
        raise SystemExit("some runs did not succeed")


if __name__ == "__main__":
    main()
