"""GET /orchestrators, the admission loop running in the app, the queue metric, and admission
decisions of two controllers at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.orchestrator_controller.schedules.ticker import Ticker
from tests.policies.test_admission import admitted, cancel, shown, submit
from tests.polling import eventually
from tests.schedules.helpers import AUTH, Clock, controller, finish_run, one_step_spec


async def test_orchestrators_show_the_five_with_config_and_live_counts(env: dict) -> None:
    config = {
        "orchestrators": {
            "api_manager": {"host_concurrency": 1},
            "batch_manager": {"max_concurrent_runs": 50},
        }
    }
    async with controller(env, **config) as (app, client):
        url = {"url": "https://api.example.com/x"}
        running = await submit(client, "pull", kind="secure_api", inputs=url)
        waiting = await submit(client, "pull", kind="secure_api", inputs=url)
        await submit(client, "plain")
        await finish_run(
            app.state.sessionmaker,
            await submit(client, "pull", kind="resilient_fetch", inputs={"url": "https://t.io"}),
            schema=env["db_schema"],
            error={"code": "http_429", "message": "slow down", "status": 429},
        )
        body = (await client.get("/orchestrators")).json()
        assert await admitted(app, running)
        assert (await shown(client, waiting))[1] == (
            "waiting: host api.example.com at its concurrency cap 1"
        )
    by_name = {o["name"]: o for o in body["items"]}
    assert sorted(by_name) == [
        "api-manager",
        "batch-manager",
        "file-manager",
        "ingestion-manager",
        "stream-manager",
    ]
    api, batch = by_name["api-manager"], by_name["batch-manager"]
    assert api["workflow_kinds"] == ["secure_api", "resilient_fetch"]
    assert api["config"]["host_concurrency"] == 1 and api["config"]["host_rate_limit"] == 30
    assert batch["config"]["max_concurrent_runs"] == 50
    assert by_name["file-manager"]["workflow_kinds"] == ["bulk_file"]
    assert by_name["stream-manager"]["workflow_kinds"] == ["realtime_stream"]
    assert by_name["ingestion-manager"]["workflow_kinds"] == ["standard", "test"]
    hosts = api["live"]["hosts"]
    assert hosts["api.example.com"]["active_runs"] == 1
    assert hosts["t.io"]["paused_because"] == "HTTP 429" and hosts["t.io"]["paused_until"]
    assert api["live"]["active_runs"] == 1 and api["live"]["waiting_runs"] == 1
    assert batch["live"]["active_runs"] == 2  # the api run and the plain one
    assert batch["live"]["waiting_runs"] == 1
    assert batch["live"]["workflow_queue_size"] == 3  # 2 admitted unstarted + 1 waiting
    assert by_name["ingestion-manager"]["live"]["active_runs"] == 1


async def test_the_admission_loop_admits_on_its_own_and_exports_the_queue(env: dict) -> None:
    config = {"orchestrators": {"batch_manager": {"max_concurrent_runs": 1}}}
    async with controller(env, start_loops=True, admission_interval_s=0.1, **config) as (
        app,
        client,
    ):
        first, second = await submit(client), await submit(client)

        async def queue_exported() -> bool:  # one admitted unstarted, one waiting
            return "workflow_queue_size 2.0" in (await client.get("/metrics")).text

        await eventually(queue_exported, within_s=5)
        # The loop has been round with both runs in view, and left the second waiting.
        assert not await admitted(app, second)
        await cancel(client, first)
        await eventually(lambda: admitted(app, second), within_s=5)
        assert await shown(client, second) == ("PENDING", None)


async def test_two_controllers_admitting_at_once_respect_the_cap(env: dict) -> None:
    config = {"orchestrators": {"batch_manager": {"max_concurrent_runs": 3}}}
    async with (
        controller(env, **config) as (app, first),
        controller(env, **config) as (_, second),
    ):
        ids = await asyncio.gather(*(submit(c) for c in [first, second] * 6))
        flags = [await admitted(app, run_id) for run_id in ids]
    assert sum(flags) == 3


async def test_scheduled_runs_wait_on_the_policies_too(env: dict) -> None:
    clock = Clock(datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    config = {"orchestrators": {"batch_manager": {"max_concurrent_per_workflow": 1}}}
    async with controller(env, clock, **config) as (app, client):
        await client.post("/workflows/definitions", json=one_step_spec("wf"), headers=AUTH)
        body = {"name": "hourly", "workflow": "wf", "cron": "@hourly", "overlap": "allow"}
        assert (await client.post("/schedules", json=body, headers=AUTH)).status_code == 201
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        clock.advance(minutes=30)
        (first,) = await ticker.tick()
        clock.advance(hours=1)
        (second,) = await ticker.tick()
        assert await admitted(app, str(first)) and not await admitted(app, str(second))
        assert (await shown(client, str(second)))[1] == (
            "waiting: workflow wf at its concurrency cap 1"
        )


async def test_a_manager_paused_in_the_settings_holds_its_runs_back(env: dict) -> None:
    """Without Kubernetes, CONTROLLER_ORCHESTRATORS pauses a manager: its runs wait (never
    fail), the others' go on, and GET /orchestrators says so and why."""
    config = {"orchestrators": {"stream_manager": {"paused": True}}}
    async with controller(env, **config) as (app, client):
        held = await submit(client, "s", kind="realtime_stream")
        other = await submit(client)
        assert await admitted(app, other) and not await admitted(app, held)
        assert await shown(client, held) == ("PENDING", "waiting: stream-manager paused")
        body = (await client.get("/orchestrators")).json()
    by_name = {o["name"]: o for o in body["items"]}
    stream = by_name["stream-manager"]
    assert stream["paused"] is True and stream["config"]["paused"] is True
    assert stream["sources"]["paused"] == "settings"
    assert stream["sources"]["max_concurrent_runs"] == "default"
    assert stream["live"]["waiting_runs"] == 1
    assert {o["name"] for o in body["items"] if o["paused"]} == {"stream-manager"}
