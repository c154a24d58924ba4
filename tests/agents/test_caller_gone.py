"""An agent stops an action whose caller (the engine cancelling a step) closed the connection,
and leaves its idempotency key retryable: the work may not have happened."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from agents.base.actions import ActionBody, ActionRegistry
from agents.base.app import create_agent_app
from agents.base.context import ActionContext
from agents.base.settings import AgentSettings
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, service_auth
from tests.serving import serve


class _Empty(ActionBody):
    """No fields."""


async def _effect(schema: str, key: str) -> asyncpg.Record:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL), server_settings={"search_path": schema})
    try:
        row = await conn.fetchrow(
            "SELECT status, error, executions FROM agent_effects WHERE idempotency_key = $1", key
        )
        assert row is not None
        return row
    finally:
        await conn.close()


async def test_an_action_stops_when_its_caller_hangs_up(db_schema: str) -> None:
    entered, stopped, finished = threading.Event(), threading.Event(), threading.Event()
    calls = 0
    registry = ActionRegistry("data-fetch-retry")

    @registry.action("fetch", _Empty)
    async def fetch(body: _Empty, ctx: ActionContext) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 1:
            return {"fetched": True}  # the retry after the cancelled attempt
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise
        finished.set()
        return {"fetched": True}

    settings = AgentSettings(
        database_url=DATABASE_URL, db_schema=db_schema, service_token="test-service-token"
    )
    key = f"{uuid.uuid4()}:fetch"
    headers = {**service_auth(), "Idempotency-Key": key}
    with serve(create_agent_app(registry, settings), lifespan="on") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/api/v1/fetch", json={}, headers=headers, timeout=1.0)
            assert entered.is_set()
            # The timeout closed the connection: the agent cancels the action at once.
            assert await asyncio.to_thread(stopped.wait, 10), "the action was not stopped"
            assert not finished.is_set()
            effect = await _effect(db_schema, key)
            assert effect["status"] == "FAILED" and effect["executions"] == 0
            assert '"retryable": true' in effect["error"]
            # Retryable: the next attempt with the same key runs the action.
            again = await client.post("/api/v1/fetch", json={}, headers=headers, timeout=10)
            assert again.status_code == 200 and again.json() == {"fetched": True}
    assert calls == 2
