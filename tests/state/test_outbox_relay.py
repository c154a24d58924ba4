"""The outbox relay's leadership, on a real PostgreSQL and Redis: one relay publishes, the
others stand by without holding back VACUUM, and a standby takes over when the active one
goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.session import asyncpg_dsn, create_engine, create_sessionmaker
from shared.events.outbox import Event, emit
from shared.events.relay import RELAY_LOCK_ID, OutboxRelay
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, REDIS_URL, fresh_schema
from tests.polling import eventually

POLL_S = 0.1


@pytest.fixture
def schema() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture
def settings(schema: str) -> CommonSettings:
    return CommonSettings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        db_schema=schema,
        stream_prefix=f"relay-{uuid.uuid4().hex[:8]}:",
    )


@pytest.fixture
async def db(settings: CommonSettings) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def redis(settings: CommonSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.stream_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@contextlib.asynccontextmanager
async def _relay(
    settings: CommonSettings, db: async_sessionmaker, redis: aioredis.Redis
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(OutboxRelay(settings, redis, poll_interval_s=POLL_S).run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _connect(schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(DATABASE_URL), server_settings={"search_path": schema})


async def _relay_lock_held(schema: str) -> bool:
    conn = await _connect(schema)
    try:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid = $1 AND objid = hashtext($2)::oid)",
                RELAY_LOCK_ID,
                schema,
            )
        )
    finally:
        await conn.close()


async def _unremovable_dead_rows(schema: str) -> int:
    """Make one dead row and VACUUM: how many dead rows VACUUM had to keep."""
    conn = await _connect(schema)
    notices: list[str] = []
    conn.add_log_listener(lambda _c, message: notices.append(str(message)))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS scratch (n int)")
        await conn.execute("TRUNCATE scratch")
        await conn.execute("INSERT INTO scratch VALUES (1)")
        await conn.execute("UPDATE scratch SET n = 2")
        await conn.execute("VACUUM (VERBOSE) scratch")
    finally:
        await conn.close()
    found = re.search(r"(\d+) are dead but not yet removable", "\n".join(notices))
    assert found, notices
    return int(found.group(1))


async def test_a_standby_relay_does_not_keep_vacuum_from_removing_dead_rows(
    schema: str, settings: CommonSettings, db: async_sessionmaker, redis: aioredis.Redis
) -> None:
    async with _relay(settings, db, redis), _relay(settings, db, redis):
        await eventually(lambda: _relay_lock_held(schema))
        await asyncio.sleep(5 * POLL_S)  # the second one is standing by by now
        # Another test's short transaction may hold a snapshot for a moment: look a few times.
        for _ in range(20):
            if await _unremovable_dead_rows(schema) == 0:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("a dead row stayed unremovable while a relay was standing by")


async def test_a_standby_relay_takes_over_when_the_active_one_stops(
    schema: str, settings: CommonSettings, db: async_sessionmaker, redis: aioredis.Redis
) -> None:
    stream = f"{settings.stream_prefix}ingestion.test.relay"
    async with _relay(settings, db, redis) as active:
        await eventually(lambda: _relay_lock_held(schema))
        async with _relay(settings, db, redis):
            active.cancel()  # the active relay's connection closes: its lock is released
            with contextlib.suppress(asyncio.CancelledError):
                await active
            async with db() as session, session.begin():
                await emit(session, [Event("ingestion.test.relay")], schema=schema)

            async def published() -> bool:
                return bool(await redis.xlen(stream))

            await eventually(published)
            assert await _relay_lock_held(schema)
    entries: Any = await redis.xrange(stream)
    assert entries is not None and len(entries) == 1
    event = json.loads(entries[0][1][b"event"])
    assert event["type"] == "ingestion.test.relay" and event["schema_version"] == 1
    assert uuid.UUID(event["id"]) and isinstance(event["sequence"], int)
    assert abs(datetime.fromisoformat(event["time"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_stop_ends_the_relay_without_a_cancel_and_publishes_what_was_committed(
    schema: str, settings: CommonSettings, db: async_sessionmaker, redis: aioredis.Redis
) -> None:
    stream = f"{settings.stream_prefix}ingestion.test.relay"
    active = OutboxRelay(settings, redis, poll_interval_s=POLL_S)
    standby = OutboxRelay(settings, redis, poll_interval_s=POLL_S)
    running = asyncio.create_task(active.run())
    waiting = asyncio.create_task(standby.run())
    try:
        await eventually(lambda: _relay_lock_held(schema))
        async with db() as session, session.begin():
            await emit(session, [Event("ingestion.test.relay")], schema=schema)

        async def published() -> bool:
            return bool(await redis.xlen(stream))

        await eventually(published)
        active.stop()
        standby.stop()
        # Both return by themselves, the active one from its wait for events, the standby from
        # its wait for the lock; a relay that only ends on a cancel times out here.
        await asyncio.wait_for(asyncio.gather(running, waiting), timeout=5)

        async def released() -> bool:
            return not await _relay_lock_held(schema)

        await eventually(released)
    finally:
        for task in (running, waiting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
