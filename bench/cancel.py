"""Cancel latency on a large fan-out: a map_over of N no-op steps (default 100,000, the
ENGINE_MAX_MAP_ITEMS cap) is submitted, and once its children exist and some have run,
`POST /workflows/{id}/cancel` is sent.

    .venv/bin/python bench/cancel.py [--items 100000] [--after 200]

Prints how long the cancel request took to answer, how long until the run was CANCELLED,
and the step rows by status at the end. Runs the whole platform as processes (the e2e launch)
on a fresh schema of the test database (TEST_DATABASE_URL, default 127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.db.session import asyncpg_dsn  # noqa: E402
from tests.conftest import DATABASE_URL, fresh_schema  # noqa: E402
from tests.e2e.conftest import API_KEY, launch  # noqa: E402


def spec(concurrency: int) -> dict:
    return {
        "name": "bench-cancel-fanout",
        "inputs": {"items": {"type": "array", "required": True}},
        "steps": [
            {
                "id": "fan",
                "agent": "data-connector",
                "action": "noop",
                "map_over": "${inputs.items}",
                "map_concurrency": concurrency,
            }
        ],
    }


async def step_counts(schema: str, run_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        rows = await conn.fetch(
            f'SELECT status, count(*) AS n FROM "{schema}".step_runs '
            "WHERE run_id = $1 GROUP BY status",
            uuid.UUID(run_id),
        )
    finally:
        await conn.close()
    return {r["status"]: r["n"] for r in rows}


async def run_status(schema: str, run_id: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        query = f'SELECT status FROM "{schema}".workflow_runs WHERE id = $1'
        return str(await conn.fetchval(query, uuid.UUID(run_id)))
    finally:
        await conn.close()


def measure(schema: str, base: str, items: int, after: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as api:
        started = time.perf_counter()
        answer = api.post(
            "/coordinate", json={"spec": spec(concurrency), "inputs": {"items": list(range(items))}}
        )
        answer.raise_for_status()
        run_id = answer.json()["run_id"]
        print(f"submitted {items} items in {time.perf_counter() - started:.2f}s (run {run_id})")
        while True:  # wait until the children exist and some have finished
            counts = asyncio.run(step_counts(schema, run_id))
            if counts.get("SUCCEEDED", 0) >= after:
                break
            time.sleep(0.5)
        print(f"before cancel ({time.perf_counter() - started:.1f}s after submit): {counts}")
        sent = time.perf_counter()
        reply = api.post(f"/workflows/{run_id}/cancel")
        answered = time.perf_counter() - sent
        print(f"cancel answered {reply.status_code} in {answered:.3f}s: {reply.json()['status']}")
        # The run's status from the database: GET /workflows/{id} would carry all its steps.
        while (status := asyncio.run(run_status(schema, run_id))) != "CANCELLED":
            if status in ("SUCCEEDED", "FAILED"):
                raise SystemExit(f"run ended {status}, not CANCELLED")
            time.sleep(0.1)
        print(f"run CANCELLED {time.perf_counter() - sent:.3f}s after the cancel was sent")
        print(f"steps at the end: {asyncio.run(step_counts(schema, run_id))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--after", type=int, default=200, help="children done before cancel")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    schemas = fresh_schema()
    schema = next(schemas)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "data").mkdir()
            (root / "logs").mkdir()
            prefix = f"bench-{uuid.uuid4().hex[:8]}:"
            with launch(schema, prefix, root / "data", root / "logs") as platform:
                measure(schema, platform.controller, args.items, args.after, args.concurrency)
    finally:
        next(schemas, None)  # drops the schema


if __name__ == "__main__":
    main()
