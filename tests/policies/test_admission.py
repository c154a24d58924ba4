"""Admission by the orchestrator policies, through /coordinate on a real PostgreSQL schema:
caps, priorities, per-host limits and pauses, fan-out shaping, backpressure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orchestrator_controller.policies.loop import AdmissionLoop
from shared.metrics import create_metrics
from tests.schedules.helpers import AUTH, Clock, controller, finish_run, one_step_spec, run_row


async def submit(
    client: httpx.AsyncClient,
    name: str = "wf",
    kind: str = "standard",
    inputs: dict[str, Any] | None = None,
    priority: int = 0,
    **spec_extra: Any,
) -> str:
    """POST /coordinate with an inline one-step spec; the run id."""
    spec = one_step_spec(name, kind=kind, **spec_extra)
    if inputs:
        spec.setdefault("inputs", {k: {"type": "any"} for k in inputs})
    response = await client.post(
        "/coordinate",
        json={"spec": spec, "inputs": inputs or {}, "priority": priority},
        headers=AUTH,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


async def admission_round(app: FastAPI) -> list[str]:
    """One pass of the admission loop; the ids it admitted."""
    loop = AdmissionLoop(
        app.state.settings, app.state.sessionmaker, app.state.policies, create_metrics()
    )
    return [str(i) for i in await loop.round()]


async def shown(client: httpx.AsyncClient, run_id: str) -> tuple[str, str | None]:
    """(status, status_reason) as GET /workflows/{id} shows them."""
    body = (await client.get(f"/workflows/{run_id}")).json()
    return body["status"], body["status_reason"]


async def admitted(app: FastAPI, run_id: str) -> bool:
    return (await run_row(app.state.sessionmaker, run_id)).admitted_at is not None


async def cancel(client: httpx.AsyncClient, run_id: str) -> None:
    assert (await client.post(f"/workflows/{run_id}/cancel", headers=AUTH)).status_code == 202


def caps(**batch: int) -> dict[str, Any]:
    return {"orchestrators": {"batch_manager": batch}}


async def test_overall_cap_holds_a_run_back_and_says_why(env: dict) -> None:
    async with controller(env, **caps(max_concurrent_runs=2)) as (app, client):
        first, second, third = [await submit(client) for _ in range(3)]
        assert await admitted(app, first) and await admitted(app, second)
        assert not await admitted(app, third)
        assert await shown(client, third) == (
            "PENDING",
            "waiting: overall concurrency cap 2 reached",
        )
        assert await admission_round(app) == []
        await cancel(client, first)
        assert await admission_round(app) == [third]
        assert await shown(client, third) == ("PENDING", None)


async def test_per_workflow_cap(env: dict) -> None:
    async with controller(env, **caps(max_concurrent_per_workflow=1)) as (app, client):
        a1, a2 = await submit(client, "alpha"), await submit(client, "alpha")
        b1 = await submit(client, "beta")
        assert [await admitted(app, r) for r in (a1, a2, b1)] == [True, False, True]
        assert (await shown(client, a2))[1] == "waiting: workflow alpha at its concurrency cap 1"


async def test_highest_priority_then_oldest_first_and_no_queue_jumping(env: dict) -> None:
    async with controller(env, **caps(max_concurrent_runs=1)) as (app, client):
        running = await submit(client)
        low = await submit(client, priority=0)
        high_old = await submit(client, priority=5)
        high_new = await submit(client, priority=5)
        order = []
        for _ in range(3):
            await cancel(client, running)
            (running,) = await admission_round(app)
            order.append(running)
        assert order == [high_old, high_new, low]
        # a slot frees up and a new run arrives before the loop notices: the waiting run of
        # the same priority takes the slot, the newcomer waits
        waiting = await submit(client)
        await cancel(client, running)
        newcomer = await submit(client)
        assert await admitted(app, waiting) and not await admitted(app, newcomer)


async def test_each_kind_manager_caps_its_own_runs(env: dict) -> None:
    config = {"orchestrators": {"ingestion_manager": {"max_concurrent_runs": 1}}}
    async with controller(env, **config) as (app, client):
        std1, std2 = await submit(client, "s1"), await submit(client, "s2")
        files = await submit(client, "f1", kind="bulk_file")
        assert [await admitted(app, r) for r in (std1, std2, files)] == [True, False, True]
        assert (await shown(client, std2))[1] == (
            "waiting: ingestion-manager at its concurrency cap 1"
        )


def api(**settings: Any) -> dict[str, Any]:
    return {"orchestrators": {"api_manager": settings}}


async def test_api_host_concurrency_cap(env: dict) -> None:
    async with controller(env, **api(host_concurrency=2)) as (app, client):
        url = {"base_url": "https://API.example.com/v1/orders"}
        runs = [await submit(client, "orders", kind="secure_api", inputs=url) for _ in range(3)]
        other = await submit(
            client, "other", kind="resilient_fetch", inputs={"url": "https://other.example.org"}
        )
        no_host = await submit(client, "local", kind="secure_api")
        assert [await admitted(app, r) for r in runs] == [True, True, False]
        assert (await shown(client, runs[2]))[1] == (
            "waiting: host api.example.com at its concurrency cap 2"
        )
        assert await admitted(app, other) and await admitted(app, no_host)
        await cancel(client, runs[0])
        assert await admission_round(app) == [runs[2]]


async def test_api_host_rate_limit_across_runs(env: dict) -> None:
    clock = Clock(datetime.now(UTC))
    config = api(host_rate_limit=2, host_rate_window_s=60)
    async with controller(env, clock, **config) as (app, client):
        url = {"source_url": "https://rate.example.com/feed"}
        runs = [await submit(client, "feed", kind="secure_api", inputs=url) for _ in range(3)]
        await cancel(client, runs[0])
        await cancel(client, runs[1])  # no longer running, but admitted within the window
        assert await admission_round(app) == []
        assert (await shown(client, runs[2]))[1] == (
            "waiting: host rate.example.com at its rate limit of 2 runs per 60s"
        )
        clock.advance(seconds=61)
        assert await admission_round(app) == [runs[2]]


@pytest.mark.parametrize(
    ("error", "why"),
    [
        ({"code": "http_429", "message": "Too Many Requests", "status": 429}, "HTTP 429"),
        ({"code": "circuit_open", "message": "breaker open", "retryable": True}, "circuit_open"),
    ],
)
async def test_a_throttled_host_is_paused_then_resumes(
    env: dict, error: dict[str, Any], why: str
) -> None:
    clock = Clock(datetime.now(UTC))
    async with controller(env, clock, **api(pause_cooldown_s=120)) as (app, client):
        url = {"base_url": "https://busy.example.com"}
        first = await submit(client, "busy", kind="secure_api", inputs=url)
        await finish_run(app.state.sessionmaker, first, schema=env["db_schema"], error=error)
        assert (await shown(client, first))[0] == "FAILED"
        paused = await submit(client, "busy", kind="secure_api", inputs=url)
        elsewhere = await submit(
            client, "calm", kind="secure_api", inputs={"base_url": "https://calm.example.com"}
        )
        status, reason = await shown(client, paused)
        assert status == "PENDING" and reason is not None
        assert reason.startswith(f"waiting: host busy.example.com paused after {why} until ")
        assert await admitted(app, elsewhere)
        clock.advance(seconds=60)
        assert await admission_round(app) == []
        # The cooldown has passed since the throttled call, which the database stamped a few
        # real seconds after the test clock started (more on a loaded machine).
        clock.advance(seconds=70)
        assert await admission_round(app) == [paused]


async def test_file_manager_caps_fan_out_and_passes_its_chunk_size(env: dict) -> None:
    config = {"orchestrators": {"file_manager": {"max_fanout": 4, "chunk_size": 250}}}
    spec = {
        "name": "files",
        "kind": "bulk_file",
        "inputs": {"files": {"type": "array"}, "chunk_size": {"type": "integer", "default": 10}},
        "steps": [
            {
                "id": "convert",
                "agent": "data-converter",
                "action": "noop",
                "map_over": "${inputs.files}",
                "map_concurrency": 50,
            },
            {"id": "merge", "agent": "data-merger", "action": "noop", "depends_on": ["convert"]},
        ],
    }
    async with controller(env, **config) as (app, client):
        ids = []
        for inputs in ({"files": ["a"]}, {"files": ["a"], "chunk_size": 7}):
            response = await client.post(
                "/coordinate", json={"spec": spec, "inputs": inputs}, headers=AUTH
            )
            ids.append(response.json()["run_id"])
        shaped, given = [await run_row(app.state.sessionmaker, i) for i in ids]
        assert shaped.spec["steps"][0]["map_concurrency"] == 4
        assert shaped.inputs["chunk_size"] == 250
        assert given.inputs["chunk_size"] == 7  # the caller's own value stands
        # the same spec as another kind is not the file manager's to shape
        other = await client.post(
            "/coordinate",
            json={"spec": {**spec, "kind": "standard"}, "inputs": {"files": ["a"]}},
            headers=AUTH,
        )
        untouched = await run_row(app.state.sessionmaker, other.json()["run_id"])
        assert untouched.spec["steps"][0]["map_concurrency"] == 50
        assert untouched.inputs["chunk_size"] == 10


async def test_stream_runs_wait_while_the_engine_backlog_is_high(env: dict) -> None:
    config = {"orchestrators": {"stream_manager": {"backpressure_queue_size": 3}}}
    async with controller(env, **config) as (app, client):
        backlog = [await submit(client, "batch") for _ in range(3)]  # admitted, not started
        stream = await submit(client, "ticks", kind="realtime_stream")
        assert (await shown(client, stream))[1] == "waiting: backpressure, engine backlog 3 >= 3"
        await cancel(client, backlog[0])
        assert await admission_round(app) == [stream]
