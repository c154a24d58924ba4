"""A value PostgreSQL refuses (SQLSTATE class 22) is the request's fault, in every agent.

The fuzzer found one such 500 (a NUL in the collector's cursor) and that action now names the
field; any other action reaching the database with such a value answers 422 `value_refused`
through the agents' common dispatch instead of a crash the engine would retry for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agents.base.actions import AgentError
from agents.base.app import _run_handler
from shared.db.errors import refused_value
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(DATABASE_URL)
    yield engine
    await engine.dispose()


async def test_the_drivers_refusal_is_found_with_its_reason(engine: AsyncEngine) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        with pytest.raises(asyncpg.PostgresError) as raw:
            await conn.fetchval("SELECT $1::text", "a\x00b")
        with pytest.raises(asyncpg.PostgresError) as overflow:
            await conn.fetchval("SELECT $1::int4 * 1000000", 100000)
    finally:
        await conn.close()
    assert "0x00" in (refused_value(raw.value) or "")
    assert "out of range" in (refused_value(overflow.value) or "")
    async with engine.connect() as session:
        with pytest.raises(Exception) as wrapped:
            await session.execute(
                text("SELECT CAST(CAST(:v AS text) AS date)"), {"v": "2026-02-30"}
            )
    assert "out of range" in (refused_value(wrapped.value) or "")


async def test_other_failures_are_not_taken_for_bad_values(engine: AsyncEngine) -> None:
    async with engine.connect() as session:
        with pytest.raises(Exception) as missing:
            await session.execute(text("SELECT * FROM no_such_table_here"))
    assert refused_value(missing.value) is None  # 42P01: the platform's fault, not the value's
    assert refused_value(ConnectionRefusedError("down")) is None


async def test_an_action_reaching_the_database_with_a_refused_value_fails_with_a_422(
    engine: AsyncEngine,
) -> None:
    no_context: Any = None  # these handlers do not use it

    async def store_name(body: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        async with engine.connect() as session:
            await session.execute(text("SELECT CAST(:name AS text)"), {"name": body["name"]})
        return {"stored": body["name"]}

    assert await _run_handler(store_name, {"name": "ok"}, no_context, "store") == {"stored": "ok"}
    with pytest.raises(AgentError) as refused:
        await _run_handler(store_name, {"name": "a\x00b"}, no_context, "store")
    assert refused.value.code == "value_refused" and refused.value.status_code == 422
    assert refused.value.retryable is False and "0x00" in refused.value.message

    async def crash(_body: Any, _ctx: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # a crash stays a crash (500, retryable)
        await _run_handler(crash, {}, no_context, "crash")
