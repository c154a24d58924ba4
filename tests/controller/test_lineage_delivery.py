"""The lineage loop on real Redis Streams and PostgreSQL, delivering to an OpenLineage HTTP
endpoint (tests/lineage_receiver.py): an event is acknowledged only once delivered, a failed
delivery is tried again, a refused event is kept on the lineage stream, and the events a dead
controller left pending are taken over."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.lineage.builder import LIFECYCLE_STREAMS
from services.orchestrator_controller.lineage.consumer import GROUP, LineageLoop
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.session import asyncpg_dsn, create_engine, create_sessionmaker
from shared.events.relay import OutboxRelay
from shared.spec.models import WorkflowSpec
from shared.state.runs import NewRun, create_runs, start_runs
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.lineage_receiver import LineageReceiver, lineage_receiver
from tests.polling import eventually

SPEC = {
    "name": "lineage_delivery",
    "steps": [{"id": "only", "agent": "data-connector", "action": "noop"}],
}


@pytest.fixture
def receiver() -> Iterator[tuple[LineageReceiver, str]]:
    with lineage_receiver() as served:
        yield served


@pytest.fixture
def settings(module_schema: str, stream_prefix: str, receiver: tuple[LineageReceiver, str]) -> Any:
    return ControllerSettings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        db_schema=module_schema,
        stream_prefix=f"{stream_prefix}lineage-{uuid.uuid4().hex[:6]}:",
        openlineage_url=receiver[1],
        openlineage_api_key="lineage-key",
        lineage_retry_s=0.05,
    )


@pytest.fixture
async def db(settings: ControllerSettings) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def started_run(
    db: async_sessionmaker, settings: ControllerSettings, redis: aioredis.Redis
) -> str:
    """A run that started, its events published to Redis by the real relay."""
    run_id = uuid.uuid4()
    async with db() as session, session.begin():
        spec = WorkflowSpec.model_validate(SPEC)
        new = NewRun(spec=spec, inputs={}, run_id=run_id)
        await create_runs(session, [new], schema=settings.db_schema)
    async with db() as session, session.begin():
        assert await start_runs(session, [run_id], schema=settings.db_schema)
    conn = await asyncpg.connect(
        asyncpg_dsn(DATABASE_URL), server_settings={"search_path": settings.db_schema}
    )
    try:
        while await OutboxRelay(settings, redis).publish_pending(conn):
            pass
    finally:
        await conn.close()
    return str(run_id)


async def pending(redis: aioredis.Redis, settings: ControllerSettings) -> int:
    """Lifecycle events read by some controller and not yet acknowledged."""
    total = 0
    for stream in LIFECYCLE_STREAMS:
        summary: Any = await redis.xpending(settings.stream_prefix + stream, GROUP)
        total += summary["pending"]
    return total


@contextlib.asynccontextmanager
async def running(loop: LineageLoop) -> AsyncIterator[None]:
    task = asyncio.create_task(loop.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await loop.aclose()


async def test_an_event_is_acknowledged_only_once_delivered(
    db: async_sessionmaker,
    redis: aioredis.Redis,
    settings: ControllerSettings,
    receiver: tuple[LineageReceiver, str],
) -> None:
    endpoint, _ = receiver
    endpoint.status = 503  # the endpoint is down
    loop = LineageLoop.from_settings(settings, db, redis)
    async with running(loop):
        run_id = await started_run(db, settings, redis)
        await eventually(lambda: endpoint.refused >= 2)  # tried, and tried again
        assert await pending(redis, settings) >= 1
        assert endpoint.of_run(run_id) == []

        endpoint.status = 201
        await eventually(lambda: endpoint.states(run_id) == ["START"])

        async def all_acknowledged() -> bool:
            return await pending(redis, settings) == 0

        await eventually(all_acknowledged)
    [event] = endpoint.of_run(run_id)
    assert event["job"] == {**event["job"], "namespace": "ingestion-platform"}
    assert event["job"]["name"] == "lineage_delivery"
    assert endpoint.authorizations[-1] == "Bearer lineage-key"


async def test_an_event_the_endpoint_refuses_is_kept_on_the_lineage_stream(
    db: async_sessionmaker,
    redis: aioredis.Redis,
    settings: ControllerSettings,
    receiver: tuple[LineageReceiver, str],
) -> None:
    endpoint, _ = receiver
    endpoint.status = 400  # sending it again would be refused again
    loop = LineageLoop.from_settings(settings, db, redis)
    lineage_stream = settings.stream_prefix + "ingestion.lineage"

    async def kept() -> list[dict[str, Any]]:
        entries: Any = await redis.xrange(lineage_stream)
        return [json.loads(fields[b"event"]) for _, fields in entries]

    async with running(loop):
        run_id = await started_run(db, settings, redis)

        async def kept_and_acknowledged() -> bool:
            ours = [e for e in await kept() if e["run"]["runId"] == run_id]
            return bool(ours) and await pending(redis, settings) == 0

        await eventually(kept_and_acknowledged)
    assert [e["eventType"] for e in await kept() if e["run"]["runId"] == run_id] == ["START"]


async def test_events_a_dead_controller_left_pending_are_taken_over(
    db: async_sessionmaker,
    redis: aioredis.Redis,
    settings: ControllerSettings,
    receiver: tuple[LineageReceiver, str],
) -> None:
    endpoint, _ = receiver
    endpoint.status = 503
    dead = LineageLoop.from_settings(settings, db, redis)
    dead.consumer = "dead-replica"
    await dead.ensure_group()
    run_id = await started_run(db, settings, redis)
    assert not await dead.deliver_once()  # read, not delivered, and then it "died"
    await dead.aclose()
    assert await pending(redis, settings) >= 1

    endpoint.status = 201
    alive = LineageLoop.from_settings(
        settings.model_copy(update={"lineage_claim_idle_s": 0.001}), db, redis
    )

    async def delivered_by_the_other() -> bool:
        await alive.deliver_once()
        return endpoint.states(run_id) == ["START"] and await pending(redis, settings) == 0

    await eventually(delivered_by_the_other)
    await alive.aclose()
