"""Run affinity between engine replicas, on a real PostgreSQL: a run's steps go to the replica
that started it (or last moved it forward), other replicas take them only once they have
waited `sticky_s`, or at once when the owner's lease expired or it shut down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.workflow_engine.settings import EngineSettings
from services.workflow_engine.worker import Executor
from shared.agent_client import AgentClient
from shared.db.session import create_engine, create_sessionmaker
from shared.metrics import create_metrics
from shared.settings import CommonSettings
from shared.spec.models import WorkflowSpec
from shared.state.leases import expire_leases, release_leases
from shared.state.runs import NewRun, create_runs, start_runs, startable_runs
from shared.state.steps import AttemptResult, ClaimedStep, claim_steps, record_results
from tests.conftest import DATABASE_URL, fresh_schema

LONG = 3600.0  # a sticky wait no test reaches


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own: claims see only its runs."""
    yield from fresh_schema()


@pytest.fixture
async def db(schema: str) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    yield create_sessionmaker(engine)
    await engine.dispose()


def _diamond() -> WorkflowSpec:
    steps: list[dict[str, Any]] = [
        {"id": "a", "agent": "data-connector", "action": "noop"},
        {"id": "b", "agent": "data-connector", "action": "noop", "depends_on": ["a"]},
        {"id": "c", "agent": "data-connector", "action": "noop", "depends_on": ["a"]},
    ]
    return WorkflowSpec.model_validate({"name": "affinity", "steps": steps})


async def _started_run(db: async_sessionmaker, schema: str, owner: str | None) -> uuid.UUID:
    async with db() as session, session.begin():
        [run] = await create_runs(session, [NewRun(spec=_diamond(), inputs={})], schema=schema)
    async with db() as session, session.begin():
        [started] = await start_runs(session, [run.id], schema=schema, owner=owner)
    return started


async def _claim(
    db: async_sessionmaker, schema: str, owner: str, sticky_s: float, lease_s: float = 60
) -> list[ClaimedStep]:
    async with db() as session, session.begin():
        return await claim_steps(
            session, owner=owner, limit=10, lease_s=lease_s, schema=schema, sticky_s=sticky_s
        )


async def _record_ok(db: async_sessionmaker, schema: str, owner: str, *steps: ClaimedStep) -> None:
    results = [AttemptResult(step=s, outcome="succeeded", output={}, worker=owner) for s in steps]
    async with db() as session, session.begin():
        await record_results(session, results, schema=schema, owner=owner)


async def _affinities(db: async_sessionmaker, run_id: uuid.UUID) -> dict[str, str | None]:
    async with db() as session:
        rows = await session.execute(
            text("SELECT step_id, affinity FROM step_runs WHERE run_id = :r"), {"r": run_id}
        )
        return {row.step_id: row.affinity for row in rows}


async def test_a_runs_steps_go_to_the_replica_that_started_it(
    db: async_sessionmaker, schema: str
) -> None:
    run_id = await _started_run(db, schema, owner="engine-a")
    assert await _claim(db, schema, "engine-b", sticky_s=LONG) == []
    [root] = await _claim(db, schema, "engine-a", sticky_s=LONG)
    assert root.step_id == "a"
    await _record_ok(db, schema, "engine-a", root)
    # b and c became ready for engine-a: engine-b, not having waited, gets neither.
    assert await _affinities(db, run_id) == {"a": "engine-a", "b": "engine-a", "c": "engine-a"}
    assert await _claim(db, schema, "engine-b", sticky_s=LONG) == []
    assert {s.step_id for s in await _claim(db, schema, "engine-a", sticky_s=LONG)} == {"b", "c"}


async def test_a_step_that_waited_out_the_sticky_time_is_taken_over_and_the_run_follows(
    db: async_sessionmaker, schema: str
) -> None:
    run_id = await _started_run(db, schema, owner="engine-a")
    await asyncio.sleep(0.05)
    # engine-a is busy: after 0.01 s of waiting the step is engine-b's to take.
    [root] = await _claim(db, schema, "engine-b", sticky_s=0.01)
    await _record_ok(db, schema, "engine-b", root)
    assert (await _affinities(db, run_id))["b"] == "engine-b"
    assert await _claim(db, schema, "engine-a", sticky_s=LONG) == []
    assert {s.step_id for s in await _claim(db, schema, "engine-b", sticky_s=LONG)} == {"b", "c"}


async def test_steps_of_a_vanished_or_stopped_replica_are_anyones_at_once(
    db: async_sessionmaker, schema: str
) -> None:
    await _started_run(db, schema, owner="engine-a")
    [root] = await _claim(db, schema, "engine-a", sticky_s=LONG, lease_s=0.01)
    await asyncio.sleep(0.05)
    async with db() as session, session.begin():
        assert await expire_leases(session, limit=10, schema=schema) == 1
    [taken] = await _claim(db, schema, "engine-b", sticky_s=LONG)
    assert taken.id == root.id
    # ...and what a replica gives back at shutdown, likewise.
    async with db() as session, session.begin():
        await release_leases(session, owner="engine-b", step_ids=[taken.id], schema=schema)
    [again] = await _claim(db, schema, "engine-c", sticky_s=LONG)
    assert again.id == root.id


async def test_runs_without_an_owner_are_anyones(db: async_sessionmaker, schema: str) -> None:
    await _started_run(db, schema, owner=None)
    assert [s.step_id for s in await _claim(db, schema, "engine-b", sticky_s=LONG)] == ["a"]


def _executor(db: async_sessionmaker, schema: str, worker: str, concurrency: int) -> Executor:
    settings = EngineSettings(
        database_url=DATABASE_URL,
        db_schema=schema,
        worker_id=worker,
        concurrency=concurrency,
        start_loops=False,
    )
    return Executor(settings, db, AgentClient({}, "unused"), create_metrics())


async def test_a_replica_that_is_behind_leaves_new_runs_to_the_others(
    db: async_sessionmaker, schema: str
) -> None:
    async with db() as session, session.begin():
        for _ in range(5):
            await create_runs(session, [NewRun(spec=_diamond(), inputs={})], schema=schema)
    busy = _executor(db, schema, "engine-a", concurrency=2)
    idle = _executor(db, schema, "engine-b", concurrency=2)
    assert await busy.start_runs_round() == (2, 2)
    # Its two roots are still unclaimed: it has as much ready work as it can run at once.
    assert await busy.start_runs_round() == (0, 0)
    assert await idle.start_runs_round() == (2, 2)
    # The runs it started are in its cache: executing their steps reads nothing back.
    async with db() as session:
        rows = await session.execute(
            text("SELECT DISTINCT run_id, affinity FROM step_runs WHERE affinity = 'engine-b'")
        )
        mine = [row.run_id for row in rows]
    assert len(mine) == 2 and all(run_id in idle.runs for run_id in mine)
    assert not any(run_id in busy.runs for run_id in mine)


async def test_replicas_starting_runs_at_once_take_different_runs(
    db: async_sessionmaker, schema: str
) -> None:
    async with db() as session, session.begin():
        for _ in range(4):
            await create_runs(session, [NewRun(spec=_diamond(), inputs={})], schema=schema)
    async with db() as first, first.begin():
        picked = await startable_runs(first, limit=2)
        # While the first replica's starter still holds its runs, a second one finds the
        # other two rather than the same two (which it could not start, and would idle).
        async with db() as second, second.begin():
            also = await startable_runs(second, limit=2)
            assert len(also) == 2 and not set(also) & set(picked)
            assert len(await start_runs(second, also, schema=schema, owner="engine-b")) == 2
        assert len(await start_runs(first, picked, schema=schema, owner="engine-a")) == 2
