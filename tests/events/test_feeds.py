"""The SSE feeds on a real PostgreSQL and Redis: a run's past is replayed from the outbox,
its live events come from the Redis streams the real relay writes, each event exactly once,
in sequence order, and the feed ends with the run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import redis.asyncio as aioredis

from shared.events.relay import OutboxRelay
from shared.settings import CommonSettings
from tests.polling import eventually
from tests.schedules.helpers import AUTH, controller, finish_run, one_step_spec


def parse_sse(body: str) -> list[dict]:
    """The `data:` payloads of a text/event-stream body, checking each id is its sequence."""
    events = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            event = json.loads(lines["data"])
            assert lines["id"] == str(event["sequence"])
            assert lines["event"] == event["type"]
            events.append(event)
    return events


async def submit(client: httpx.AsyncClient, name: str) -> str:
    response = await client.post("/coordinate", json={"spec": one_step_spec(name)}, headers=AUTH)
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


@contextlib.asynccontextmanager
async def relay(module_env: dict, redis: aioredis.Redis) -> AsyncIterator[None]:
    """The real outbox relay publishing this schema's events while the block runs."""
    task = asyncio.create_task(OutboxRelay(CommonSettings(**_common(module_env)), redis).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _common(module_env: dict) -> dict:
    return {k: module_env[k] for k in ("database_url", "redis_url", "db_schema", "stream_prefix")}


async def test_a_finished_runs_feed_replays_its_events_and_ends(module_env: dict) -> None:
    async with controller(module_env) as (app, client):
        run_id = await submit(client, "feed-replay")
        await finish_run(app.state.sessionmaker, run_id, schema=module_env["db_schema"])
        response = await client.get(f"/workflows/{run_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    types = [e["type"] for e in events]
    assert types[0] == "ingestion.workflow.pending"
    assert types[-1] == "ingestion.workflow.completed"
    assert "ingestion.step.succeeded" in types
    assert all(e["run_id"] == run_id for e in events)
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


async def test_the_feed_resumes_after_last_event_id(module_env: dict) -> None:
    async with controller(module_env) as (app, client):
        run_id = await submit(client, "feed-resume")
        await finish_run(app.state.sessionmaker, run_id, schema=module_env["db_schema"])
        full = parse_sse((await client.get(f"/workflows/{run_id}/events")).text)
        cut = full[1]["sequence"]
        rest = parse_sse(
            (
                await client.get(f"/workflows/{run_id}/events", headers={"Last-Event-ID": str(cut)})
            ).text
        )
    assert [e["sequence"] for e in rest] == [e["sequence"] for e in full[2:]]


async def test_live_events_arrive_once_after_the_replay(module_env: dict) -> None:
    async with controller(module_env) as (app, client):
        redis = app.state.redis
        run_id = await submit(client, "feed-live")
        async with relay(module_env, redis):
            # The pending event reaches Redis before the feed opens: replayed, not repeated.
            feed = asyncio.create_task(client.get(f"/workflows/{run_id}/events", timeout=30))

            async def tailing() -> bool:
                return any(c.get("cmd") == "xread" for c in await redis.client_list())

            await eventually(tailing)
            await finish_run(app.state.sessionmaker, run_id, schema=module_env["db_schema"])
            response = await asyncio.wait_for(feed, 20)
    events = parse_sse(response.text)
    types = [e["type"] for e in events]
    assert types.count("ingestion.workflow.pending") == 1
    assert types[-1] == "ingestion.workflow.completed"
    assert "ingestion.workflow.started" in types
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


async def test_unknown_runs_have_no_feed(module_env: dict) -> None:
    async with controller(module_env) as (_app, client):
        missing = await client.get(f"/workflows/{uuid.uuid4()}/events")
        garbage = await client.get("/workflows/not-a-run/events")
    assert missing.status_code == 404 and missing.json()["error"]
    assert garbage.status_code == 404
