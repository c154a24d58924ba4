"""Throughput of the whole platform: N runs of a 6-step diamond of no-op agent actions,
submitted through /coordinate, executed by 1..K engine replicas against the real agents.

    uv run python bench/throughput.py --runs 1000 --engines 1
    uv run python bench/throughput.py --runs 1000 --engines 1,2 --repeat 3 [--drain]
    uv run python bench/throughput.py --runs 1000 --rounds 10

With `--rounds K`, K rounds run back to back in one schema with no VACUUM between them
(autovacuum as the machine has it): whether the cost per run grows with the history the
earlier rounds left. Every invocation also measures the plain limit of the same database,
two autocommitted asyncpg transactions per step at concurrency 64, and prints the
platform's steps/s as a share of it, and how many of the updates of `step_runs` and
`workflow_runs` over the whole invocation were HOT (no index entry written).

A list of replica counts is compared in one run: rounds alternate between the counts (the
replicas not in a round are frozen) and each figure is the median of its rounds, so a noisy
shared machine weighs on every count alike.

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
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

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
    # aiohttp: the load generator shares the machine, and httpx costs ~20x the CPU per request
    # (bench/agent_client.py).
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(
        base_url=base,
        headers={"Authorization": "Bearer dev-api-key"},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as api:

        async def one(i: int) -> str:
            async with limit, api.post("/coordinate", json={"spec": DIAMOND, "inputs": {}}) as r:
                r.raise_for_status()
                return str((await r.json())["run_id"])

        return await asyncio.gather(*(one(i) for i in range(runs)))


def connect(env: dict[str, str]) -> Any:
    """A connection to the platform's database, in its schema."""
    return asyncpg.connect(
        asyncpg_dsn(env["DATABASE_URL"]), server_settings={"search_path": env["DB_SCHEMA"]}
    )


async def wait_done(env: dict[str, str], timeout_s: float) -> None:
    """Wait until no run is unfinished. The schema is the bench's own and rounds do not overlap,
    so that is this round's runs; counted through the status index, the poll costs the
    database next to nothing (matching thousands of ids took 5 ms of its CPU per poll). The
    figures come from the runs' own timestamps, not from when this poll noticed."""
    conn = await connect(env)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            open_runs = await conn.fetchval(
                "SELECT count(*) FROM workflow_runs WHERE status IN ('PENDING', 'RUNNING')"
            )
            if open_runs == 0:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{open_runs} runs unfinished after {timeout_s}s")
    finally:
        await conn.close()


async def measure(
    env: dict[str, str], run_ids: list[str], *, executing_only: bool
) -> dict[str, float]:
    conn = await connect(env)
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


async def vacuum(env: dict[str, str]) -> None:
    """Clear dead rows left by earlier runs (autovacuum may be off or behind on a bench box),
    so every run of the bench starts from the same state whatever ran before it."""
    conn = await connect(env)
    try:
        await conn.execute("VACUUM ANALYZE workflow_runs, step_runs, event_outbox")
    finally:
        await conn.close()


async def drop(env: dict[str, str], own: str) -> None:
    """Remove the run's schema and streams."""
    conn = await asyncpg.connect(asyncpg_dsn(env["DATABASE_URL"]))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{own}" CASCADE')
    finally:
        await conn.close()
    redis = aioredis.from_url(env["REDIS_URL"])
    try:
        keys = [key async for key in redis.scan_iter(match=f"{own}:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def pause(service: Service, frozen: bool) -> None:
    """SIGSTOP/SIGCONT a service process: its connections and state stay as they are."""
    assert service.process is not None
    service.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)


def one_round(
    platform: Any,
    engines: list[Service],
    active: int,
    args: argparse.Namespace,
    *,
    clean_start: bool = True,
) -> dict[str, float]:
    """Submit `args.runs` runs and let the first `active` engines execute them (the others
    stay frozen: started, warm, and taking no work). With `clean_start`, dead rows of earlier
    rounds are vacuumed first."""
    if clean_start:
        asyncio.run(vacuum(platform.env))
    working = engines[:active]
    if args.drain:
        # Frozen, not stopped: the engines are started and warm when the work arrives, so one
        # replica's start-up does not eat the CPU another one is working with.
        for engine in working:
            pause(engine, True)
    started = time.perf_counter()
    run_ids = asyncio.run(submit_all(platform.controller_url, args.runs, args.submit_concurrency))
    submit_s = time.perf_counter() - started
    if args.drain:
        for engine in working:
            pause(engine, False)
    asyncio.run(wait_done(platform.env, timeout_s=600))
    figures = asyncio.run(measure(platform.env, run_ids, executing_only=args.drain))
    figures["submitted_runs_per_s"] = args.runs / submit_s
    if args.drain:  # submit→first step includes the engines' start: not a latency
        figures.pop("first_step_p50_ms")
        figures.pop("first_step_p99_ms")
    if figures["succeeded"] != figures["runs"] and os.environ.get("BENCH_STRICT"):
        raise SystemExit("some runs did not succeed")
    return figures


def bench_env() -> dict[str, str]:
    """The platform's settings for a benchmark: no seeded schedules, admission caps lifted, and
    a schema and stream prefix of its own (dropped at the end by `drop`)."""
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
    # A schema and stream prefix of this run's own, dropped at the end: figures must not
    # depend on how much earlier runs left behind (tables that outgrow the cache are slower).
    own = f"bench_{uuid.uuid4().hex[:8]}"
    quiet.update(DB_SCHEMA=own, STREAM_PREFIX=f"{own}:")
    return quiet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument(
        "--engines",
        default="1",
        help="engine replicas, or a list to compare in one run (1,2): the rounds alternate",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds per replica count")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="consecutive rounds in one schema, no VACUUM between (one replica count)",
    )
    parser.add_argument("--submit-concurrency", type=int, default=32)
    parser.add_argument(
        "--drain", action="store_true", help="submit with engines frozen, then execute"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.engines.split(",")]
    var = ROOT / "var" / "bench"
    quiet = bench_env()
    if args.rounds and len(counts) > 1:
        parser.error("--rounds measures one replica count")
    rounds: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    hot: dict[str, tuple[int, int]] = {}
    limit = run_all(var, quiet, counts, args, rounds, hot)
    report(counts, rounds, args, limit)
    for table, (updates, hot_updates) in hot.items():
        share = hot_updates / updates if updates else 0.0
        print(f"{table}: {hot_updates} of {updates} updates HOT ({share:.0%})")


def run_all(
    var: Path,
    quiet: dict[str, str],
    counts: list[int],
    args: argparse.Namespace,
    rounds: dict[int, list[dict[str, float]]],
    hot: dict[str, tuple[int, int]],
) -> float:
    """Start the platform (and extra engines), measure every round and, with the services
    frozen, the database's plain two-commit limit; return that limit in steps/s. `hot` gets
    each hot table's (updates, HOT updates) over the invocation."""
    with running_platform(
        var, ports=Ports.random(), say=lambda *_: None, extra_env=quiet
    ) as platform:
        extra = []
        for i in range(1, max(counts)):
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
            if args.rounds:
                for i in range(args.rounds):
                    n = counts[0]
                    for idle in engines[n:]:
                        pause(idle, True)
                    rounds[n].append(one_round(platform, engines, n, args, clean_start=i == 0))
                    for idle in engines[n:]:
                        pause(idle, False)
                return measure_limit(platform, engines)
            # The machine is shared and noisy: alternate the replica counts, round by round,
            # so that each is measured under the same conditions.
            for _ in range(args.repeat):
                for n in counts:
                    for idle in engines[n:]:
                        pause(idle, True)
                    try:
                        rounds[n].append(one_round(platform, engines, n, args))
                    finally:
                        for idle in engines[n:]:
                            pause(idle, False)
            return measure_limit(platform, engines)
        finally:
            for service in [*extra, *platform.services.values()]:
                service.stop()
            hot.update(asyncio.run(hot_updates(platform.env)))
            # The services are stopped: nothing holds the schema any more.
            asyncio.run(drop(platform.env, quiet["DB_SCHEMA"]))


async def hot_updates(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(updates, HOT updates) of step_runs and workflow_runs in the bench's schema. A backend
    publishes its counts when idle, at the latest PostgreSQL's 10 s idle interval: wait it out
    (the services are stopped by now, so their backends have ended and flushed)."""
    await asyncio.sleep(1.0)
    conn = await connect(env)
    try:
        rows = await conn.fetch(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname IN ('step_runs', 'workflow_runs') ORDER BY 1",
            env["DB_SCHEMA"],
        )
    finally:
        await conn.close()
    return {r["relname"]: (r["n_tup_upd"], r["n_tup_hot_upd"]) for r in rows}


def measure_limit(platform: Any, engines: list[Service]) -> float:
    """The plain two-commit limit, measured with every service frozen so that it has the
    machine to itself, as the platform had in its rounds."""
    frozen = [*platform.services.values(), *engines[1:]]
    for service in frozen:
        pause(service, True)
    try:
        return asyncio.run(two_commit_limit(platform.env))
    finally:
        for service in frozen:
            pause(service, False)


async def two_commit_limit(
    env: dict[str, str], steps: int = 20_000, concurrency: int = 64
) -> float:
    """Steps/s of the least a durable step costs: one autocommitted UPDATE to claim it and
    one to record its result, on rows of a table of its own, from 64 connections at once."""
    table = f'"{env["DB_SCHEMA"]}".bench_two_commit'
    setup = await connect(env)
    try:
        await setup.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, status text NOT NULL, "
            "owner text, output jsonb, started_at timestamptz, finished_at timestamptz)"
        )
        await setup.execute(
            f"INSERT INTO {table} (id, status) SELECT g, 'READY' FROM generate_series(1, $1) g",
            steps,
        )
        await setup.execute(f"VACUUM ANALYZE {table}")
        pool = await asyncpg.create_pool(
            asyncpg_dsn(env["DATABASE_URL"]), min_size=concurrency, max_size=concurrency
        )
        ids = iter(range(1, steps + 1))

        async def worker() -> None:
            async with pool.acquire() as conn:
                for step_id in ids:
                    await conn.execute(
                        f"UPDATE {table} SET status = 'RUNNING', owner = 'bench', "
                        "started_at = now() WHERE id = $1",
                        step_id,
                    )
                    await conn.execute(
                        f"UPDATE {table} SET status = 'SUCCEEDED', output = '{{}}'::jsonb, "
                        "finished_at = now() WHERE id = $1",
                        step_id,
                    )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await pool.close()
        await setup.execute(f"DROP TABLE {table}")
        return steps / elapsed
    finally:
        await setup.close()


def report(
    counts: list[int],
    rounds: dict[int, list[dict[str, float]]],
    args: argparse.Namespace,
    limit: float,
) -> None:
    """Print each replica count's median figures, the steps/s ratios and the platform's
    share of the database's plain limit."""
    mode = "drain: submitted with engines frozen" if args.drain else "submitted while running"
    print(f"runs={args.runs} per round (6-step diamond, no-op agents; {mode})")
    for n in counts:
        print(f"engines={n}: median of {len(rounds[n])} rounds (each round's value)")
        for key in rounds[n][0]:
            values = [r[key] for r in rounds[n]]
            middle = statistics.median(values)
            each = " ".join(f"{v:.0f}" for v in values) if len(values) > 1 else ""
            shown = f"{middle:10.2f}" if isinstance(values[0], float) else f"{middle:10}"
            print(f"  {key:<20} {shown}   {each}")
    if len(counts) > 1:
        base = statistics.median(r["steps_per_s"] for r in rounds[counts[0]])
        for n in counts[1:]:
            ratio = statistics.median(r["steps_per_s"] for r in rounds[n]) / base
            print(f"steps/s with {n} engines / with {counts[0]}: {ratio:.2f}")
    print(f"two-commit limit (asyncpg alone, concurrency 64): {limit:.0f} steps/s")
    for n in counts:
        share = statistics.median(r["steps_per_s"] for r in rounds[n]) / limit
        print(f"engines={n}: end to end / two-commit limit: {share:.0%}")
    if args.rounds:
        first, last = rounds[counts[0]][0], rounds[counts[0]][-1]
        print(
            f"round {len(rounds[counts[0]])} / round 1 (runs/s): "
            f"{last['runs_per_s'] / first['runs_per_s']:.2f}"
        )


if __name__ == "__main__":
    main()
