"""Buffers one claim reads: EXPLAIN (ANALYZE, BUFFERS) of the engine's claim statement on a
schema with history, driven through the state machine as an engine would (no agents).

    uv run python bench/claim_buffers.py --history 500 --runs 64

`--history` runs of the bench's diamond (and as many of a diamond whose steps reference
earlier outputs) are run to the end first, with no VACUUM, as a busy platform leaves its
tables; then `--runs` more of each are driven until their join step `f` is READY, and the
claim of those joins is explained inside a transaction that is rolled back; last, the claim of
the first items of one run's 2,000-item map_over step. Prints, per case, the claim's shared
buffers (hit or read) per claimed step, in all and in the subquery that reads the earlier
steps' outputs. Uses DATABASE_URL (default: the local test database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from bench.throughput import DIAMOND  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.db.session import asyncpg_dsn, create_engine, create_sessionmaker  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402
from shared.spec.models import WorkflowSpec  # noqa: E402
from shared.state import steps as steps_module  # noqa: E402
from shared.state.runs import NewRun, create_runs, start_runs  # noqa: E402
from shared.state.steps import (  # noqa: E402
    AttemptResult,
    ClaimedStep,
    claim_steps,
    record_results,
)

_DIAMOND_STEPS: list[dict[str, Any]] = json.loads(json.dumps(DIAMOND["steps"]))
FAN_ITEMS = 2000
# A map_over step of FAN_ITEMS items over a's output: each item renders the list (needs a).
FANOUT: dict[str, Any] = {
    "name": "bench-fanout",
    "steps": [
        {**_DIAMOND_STEPS[0]},
        {
            "id": "fan",
            "agent": "data-collector",
            "action": "noop",
            "depends_on": ["a"],
            "map_over": "${steps.a.output.items}",
            "map_concurrency": 64,
        },
    ],
}
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

# The same diamond with data flow: b..e read a's output, f reads b's and c's.
REFERENCING: dict[str, Any] = {
    "name": "bench-diamond-refs",
    "steps": [
        {**_DIAMOND_STEPS[0]},
        *({**step, "params": {"rows": "${steps.a.output.rows}"}} for step in _DIAMOND_STEPS[1:5]),
        {
            **_DIAMOND_STEPS[5],
            "params": {"left": "${steps.b.output.rows}", "right": "${steps.c.output}"},
        },
    ],
}


async def start(db: async_sessionmaker, schema: str, spec: dict[str, Any], n: int) -> None:
    """Create and start `n` runs of `spec`."""
    parsed = WorkflowSpec.model_validate(spec)
    ids = [uuid.uuid4() for _ in range(n)]
    async with db() as session, session.begin():
        news = [NewRun(spec=parsed, inputs={}, run_id=i) for i in ids]
        await create_runs(session, news, schema=schema)
    async with db() as session, session.begin():
        await start_runs(session, ids, schema=schema)


async def drive(db: async_sessionmaker, schema: str) -> None:
    """Claim and succeed steps in batches of 64 until none is ready, stopping before a batch
    that reaches a step of priority -1 (it is left READY: that claim is rolled back)."""
    while True:
        async with db() as session:
            transaction = await session.begin()
            claimed = await claim_steps(session, owner="w", limit=64, lease_s=60, schema=schema)
            held = [c for c in claimed if c.id in await _held(session)]
            if not claimed or held:
                await transaction.rollback()
                return
            await transaction.commit()
        results = [_succeeded(c) for c in claimed]
        async with db() as session, session.begin():
            await record_results(session, results, schema=schema, owner="w")


def _succeeded(step: ClaimedStep) -> AttemptResult:
    if step.step_id == "fan" and step.map_index < 0:  # the map_over parent: its items
        items = list(range(FAN_ITEMS))
        return AttemptResult(
            step=step, outcome="succeeded", worker="w", map_items=items, fanout_limit=64
        )
    return AttemptResult(step=step, outcome="succeeded", output={"rows": 3}, worker="w")


async def _held(session: Any) -> set[int]:
    rows = await session.execute(text("SELECT id FROM step_runs WHERE priority = -1"))
    return {row.id for row in rows}


async def explain_claim(db: async_sessionmaker, limit: int) -> tuple[int, int, int]:
    """(claimed, buffers in all, buffers of the output subqueries) of one claim, rolled back."""
    params = {"owner": "x", "limit": limit, "lease_s": 60.0, "sticky_s": 0.0}
    query = steps_module._CLAIM.text
    async with db() as session:
        transaction = await session.begin()
        row = (
            await session.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query), params)
        ).scalar_one()
        await transaction.rollback()
    plan = (json.loads(row) if isinstance(row, str) else row)[0]["Plan"]
    # The outputs subquery is the outer query's own SubPlan (the CTEs are InitPlans).
    outputs = sum(
        _buffers(child)
        for child in plan.get("Plans", [])
        if child.get("Parent Relationship") == "SubPlan"
    )
    return int(plan["Actual Rows"]), _buffers(plan), outputs


def _buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=500)
    parser.add_argument("--runs", type=int, default=64)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    schema = f"bench_claim_{uuid.uuid4().hex[:8]}"
    # Alembic runs its own event loop: migrate before this one starts.
    await asyncio.to_thread(upgrade, CommonSettings(database_url=url, db_schema=schema))
    engine = create_engine(CommonSettings(database_url=url, db_schema=schema))
    db = create_sessionmaker(engine)
    print(f"claim module: {steps_module.__file__}")
    try:
        for spec in (DIAMOND, REFERENCING):
            for chunk in range(0, args.history, 250):
                await start(db, schema, spec, min(250, args.history - chunk))
                await drive(db, schema)
        for spec in (DIAMOND, REFERENCING):
            await start(db, schema, spec, args.runs)
            # The joins come last in claim order (priority DESC): the claim explained is theirs.
            async with db() as session, session.begin():
                await session.execute(
                    text(
                        "UPDATE step_runs SET priority = -1 "
                        "WHERE step_id = 'f' AND status = 'PENDING'"
                    )
                )
            await drive(db, schema)
            claimed, total, outputs = await explain_claim(db, args.runs)
            print(
                f"{spec['name']}: claim of {claimed} join steps after {args.history} runs of each: "
                f"{total / claimed:.1f} buffers per claimed step "
                f"({outputs / claimed:.1f} in the outputs subquery)"
            )
            async with db() as session, session.begin():
                await session.execute(text("UPDATE step_runs SET priority = 0 WHERE priority = -1"))
            await drive(db, schema)
        # One run fanned out: the first window of its items is claimed with FAN_ITEMS rows of
        # the same run in the table.
        await start(db, schema, FANOUT, 1)
        async with db() as session, session.begin():
            [a] = await claim_steps(session, owner="w", limit=1, lease_s=60, schema=schema)
        async with db() as session, session.begin():
            await record_results(session, [_succeeded(a)], schema=schema, owner="w")
        async with db() as session, session.begin():
            [fan] = await claim_steps(session, owner="w", limit=1, lease_s=60, schema=schema)
        async with db() as session, session.begin():
            await record_results(session, [_succeeded(fan)], schema=schema, owner="w")
        claimed, total, outputs = await explain_claim(db, 64)
        print(
            f"bench-fanout: claim of {claimed} items of a {FAN_ITEMS}-item map_over step: "
            f"{total / claimed:.1f} buffers per claimed step "
            f"({outputs / claimed:.1f} in the outputs subquery)"
        )
    finally:
        await engine.dispose()
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
