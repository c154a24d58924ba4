"""The fault scenarios of the harness, sized by the caller: `tests/e2e/test_faults.py` runs them
small inside `make test`, `bench/chaos.py` runs them bigger and prints the counts as a table.

Each returns the `Counts` of its runs; the caller asserts (or prints) them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from typing import Any

import httpx

from launcher.processes import Service
from tests.conftest import DATABASE_URL, target_schema
from tests.e2e.chaos import ChaosPlatform
from tests.e2e.counts import Counts, count_all
from tests.e2e.faults import restart_postgres

ROWS = 5  # rows per source file of the pipeline
RETRY = {
    "max_attempts": 20,
    "initial_interval_s": 0.2,
    "backoff_coefficient": 2.0,
    "max_interval_s": 3.0,
    "jitter": 0.2,
}


# ---- the pipeline: collect a file, convert it, merge it into a table ---------------------------


def pipeline_spec(platform: ChaosPlatform, table: str) -> dict[str, Any]:
    """collect → convert → merge (append into `table`): three ledgered effects per run."""
    return {
        "name": "chaos-pipeline",
        "inputs": {"source": {"type": "string", "required": True}},
        "steps": [
            {
                "id": "collect",
                "agent": "data-collector",
                "action": "collect",
                "params": {"source": {"kind": "file", "url": "${inputs.source}"}},
                "retry": RETRY,
                "timeout_s": 30,
            },
            {
                "id": "convert",
                "agent": "data-converter",
                "action": "convert",
                "depends_on": ["collect"],
                "params": {"files": "${steps.collect.output.files}", "format": "csv"},
                "retry": RETRY,
                "timeout_s": 30,
            },
            {
                "id": "merge",
                "agent": "data-merger",
                "action": "merge",
                "depends_on": ["convert"],
                "params": {
                    "batches": "${steps.convert.output.files}",
                    "dataset": table,
                    "target": {
                        "kind": "postgres",
                        "table": table,
                        "schema": target_schema(platform.schema),
                    },
                },
                "retry": RETRY,
                "timeout_s": 30,
            },
        ],
    }


def pipeline_inputs(platform: ChaosPlatform, scenario: str, runs: int) -> list[dict[str, Any]]:
    """One source folder per run, holding one small CSV whose rows carry the run's tag."""
    inputs = []
    for i in range(runs):
        tag = f"{scenario}-{i:05d}-{uuid.uuid4().hex[:6]}"
        folder = platform.data_root / "sources" / tag
        folder.mkdir(parents=True)
        lines = ["order_id,tag,amount"] + [f"{n},{tag},{n * 10}" for n in range(1, ROWS + 1)]
        (folder / "orders.csv").write_text("\n".join(lines) + "\n")
        inputs.append({"source": str(folder)})
    return inputs


async def count_pipeline_data(
    platform: ChaosPlatform, counts: Counts, table: str, run_ids: list[str]
) -> None:
    """Rows in the merged table per run: one copy of each source row for a succeeded run."""
    rows = await platform.query(
        f'SELECT tag, count(*) AS n FROM "{target_schema(platform.schema)}"."{table}" GROUP BY tag'
    )
    per_tag = {row["tag"]: int(row["n"]) for row in rows}
    runs = await platform.query(
        "SELECT status, inputs->>'source' AS source FROM workflow_runs WHERE id = ANY($1::uuid[])",
        run_ids,
    )
    missing = 0
    for run in runs:
        found = per_tag.get(run["source"].rsplit("/", 1)[-1], 0)
        counts.data_duplicates += max(0, found - ROWS)
        if run["status"] == "SUCCEEDED" and found < ROWS:
            missing += 1
    counts.missing_effects += missing
    counts.notes["rows_merged"] = sum(per_tag.values())


async def kill_repeatedly(
    engine: Service, stop: asyncio.Event, every_s: tuple[float, float], rng: random.Random
) -> int:
    """SIGKILL the engine a few seconds after each start, and start it again at once."""
    kills = 0
    while not stop.is_set():
        await asyncio.to_thread(engine.wait_healthy, 180)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*every_s))
        if stop.is_set():
            break
        await asyncio.to_thread(engine.kill)
        kills += 1
        await asyncio.to_thread(engine.start)
    return kills


async def engine_crashes(
    platform: ChaosPlatform,
    *,
    runs: int,
    replicas: int = 1,
    waves: int = 5,
    every_s: tuple[float, float] = (1.0, 3.0),
    timeout_s: float = 300,
    seed: int = 1,
) -> Counts:
    """Scenarios 1 and 2: `runs` pipelines while the first engine is SIGKILLed and restarted
    every few seconds; with `replicas` > 1 the other replicas keep running.

    Runs go in in `waves`, each followed a few seconds later by a kill (so every kill lands
    while that wave is under way, however fast the machine); then the kills go on every few
    seconds until every run has ended."""
    name = "engine SIGKILL" if replicas == 1 else f"{replicas} replicas, one SIGKILLed"
    scenario = f"kill{replicas}"
    started = time.monotonic()
    rng = random.Random(seed)
    engine = platform.engines[0]
    extra = [await asyncio.to_thread(platform.add_engine) for _ in range(replicas - 1)]
    table = f"orders_{scenario}_{uuid.uuid4().hex[:6]}"
    spec = pipeline_spec(platform, table)
    inputs = pipeline_inputs(platform, scenario, runs)
    size = -(-runs // waves)
    run_ids: list[str] = []
    kills = 0
    stop = asyncio.Event()
    killer: asyncio.Task[int] | None = None
    try:
        for wave in range(waves):
            run_ids += await platform.submit(spec, inputs[wave * size : (wave + 1) * size])
            await asyncio.sleep(rng.uniform(*every_s))
            await asyncio.to_thread(engine.kill)
            kills += 1
            await asyncio.to_thread(engine.start)
        killer = asyncio.create_task(kill_repeatedly(engine, stop, every_s, rng))
        await platform.wait_terminal(run_ids, timeout_s)
    finally:
        stop.set()
        if killer is not None:
            kills += await killer
        await asyncio.to_thread(engine.wait_healthy, 180)
        for replica in extra:  # graceful: SIGTERM, the replica drains or releases its leases
            await asyncio.to_thread(replica.stop)
            platform.engines.remove(replica)
    counts = await count_all(platform, name, run_ids, faults=kills, started=started)
    await count_pipeline_data(platform, counts, table, run_ids)
    return counts


async def redis_outage(
    platform: ChaosPlatform, *, runs: int, outage_s: float = 6.0, timeout_s: float = 240
) -> Counts:
    """Scenario 3: Redis is killed mid-run and comes back `outage_s` later; runs go on, events
    wait in the outbox, and every one reaches the streams afterwards."""
    started = time.monotonic()
    table = f"orders_redis_{uuid.uuid4().hex[:6]}"
    spec = pipeline_spec(platform, table)
    inputs = pipeline_inputs(platform, "redis", runs)
    half = runs // 2
    run_ids = await platform.submit(spec, inputs[:half])
    await _until_some_finish(platform, run_ids, 1)
    platform.redis.kill()
    try:
        [down_at] = await platform.query("SELECT now() AS t")
        # Runs are accepted and executed while Redis is away.
        run_ids += await platform.submit(spec, inputs[half:])
        engine_health = await _health(platform.engines[0].url)
        await asyncio.sleep(outage_s)
        [during] = await platform.query(
            "SELECT count(*) AS n FROM event_outbox WHERE created_at >= $1 "
            "AND run_id = ANY($2::uuid[])",
            down_at["t"],
            run_ids,
        )
    finally:
        await asyncio.to_thread(platform.redis.start)
    await platform.wait_terminal(run_ids, timeout_s)
    counts = await count_all(platform, "Redis outage", run_ids, faults=1, started=started)
    await count_pipeline_data(platform, counts, table, run_ids)
    counts.notes["events_during_outage"] = int(during["n"])
    counts.notes["engine_health_during_outage"] = engine_health
    return counts


async def postgres_restart(platform: ChaosPlatform, *, runs: int, timeout_s: float = 240) -> Counts:
    """Scenario 4: the PostgreSQL server restarts mid-run; every service reconnects and every
    run still ends, without an effect repeated."""
    started = time.monotonic()
    table = f"orders_pg_{uuid.uuid4().hex[:6]}"
    spec = pipeline_spec(platform, table)
    inputs = pipeline_inputs(platform, "pg", runs)
    run_ids = await platform.submit(spec, inputs)
    await _until_some_finish(platform, run_ids, 1)
    restart_s = await asyncio.to_thread(restart_postgres, DATABASE_URL)
    await platform.wait_terminal(run_ids, timeout_s)
    counts = await count_all(platform, "PostgreSQL restart", run_ids, faults=1, started=started)
    await count_pipeline_data(platform, counts, table, run_ids)
    counts.notes["restart_s"] = round(restart_s, 1)
    return counts


async def _until_some_finish(platform: ChaosPlatform, run_ids: list[str], n: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        statuses = await platform.statuses(run_ids)
        if sum(1 for s in statuses.values() if s == "SUCCEEDED") >= n:
            return
        await asyncio.sleep(0.2)


async def _health(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        status: str = (await client.get(f"{url}/health")).json()["status"]
        return status
