"""The four seed schedules: created at the first start, never duplicated, enabled once their
workflow is registered (built-in workflow files are not loaded here, so the test does not
depend on which of them exist yet)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.orchestrator_controller.app import create_seed_schedules
from services.orchestrator_controller.schedules.ticker import Ticker
from tests.schedules.helpers import AUTH, Clock, controller, one_step_spec

NOW = datetime(2026, 5, 1, 7, 30, tzinfo=UTC)
SEEDS = {
    "base_standard_ingestion_workflow": ("standard", "cron", "0 */6 * * *"),
    "base_secure_api_ingestion_workflow": ("secure_api", "cron", "0 */4 * * *"),
    "base_bulk_file_ingestion_workflow": ("bulk_file", "cron", "0 */12 * * *"),
    "base_realtime_stream_ingestion": ("realtime_stream", "continuous", None),
}


async def test_seeds_exist_after_first_start_disabled_until_their_workflow_exists(
    env: dict,
) -> None:
    async with controller(env, Clock(NOW), seed_schedules=True) as (_, client):
        items = (await client.get("/schedules")).json()["items"]
    assert {s["name"]: (s["workflow"], s["trigger"], s["cron"]) for s in items} == SEEDS
    for schedule in items:
        assert schedule["source"] == "seed" and schedule["enabled"] is False
        assert f"no registered workflow {schedule['workflow']!r}" in schedule["status_reason"]
        assert schedule["next_fire_times"] == []


async def test_restarts_and_concurrent_starts_do_not_duplicate_seeds(env: dict) -> None:
    clock = Clock(NOW)
    async with (
        controller(env, clock) as (app_a, client),
        controller(env, clock) as (app_b, _),
    ):
        # two replicas reaching their first start at the same moment
        await asyncio.gather(
            create_seed_schedules(app_a.state.sessionmaker, clock),
            create_seed_schedules(app_b.state.sessionmaker, clock),
        )
        assert sorted(s["name"] for s in (await client.get("/schedules")).json()["items"]) == (
            sorted(SEEDS)
        )
    for _ in range(2):  # and restarts
        async with controller(env, clock, seed_schedules=True) as (_, client):
            items = (await client.get("/schedules")).json()["items"]
        assert sorted(s["name"] for s in items) == sorted(SEEDS)


async def test_seeds_start_working_when_their_workflows_appear(env: dict) -> None:
    clock = Clock(NOW)
    async with controller(env, clock, seed_schedules=True) as (app, client):
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        for name, kind in (("standard", "standard"), ("realtime_stream", "realtime_stream")):
            spec = one_step_spec(name, kind=kind)
            response = await client.post("/workflows/definitions", json=spec, headers=AUTH)
            assert response.status_code == 201
        # secure_api appears too, but needs an input the seed does not give
        needs_url = one_step_spec(
            "secure_api",
            kind="secure_api",
            inputs={"base_url": {"type": "string", "required": True}},
        )
        await client.post("/workflows/definitions", json=needs_url, headers=AUTH)
        started = await ticker.tick()
        shown = {s["name"]: s for s in (await client.get("/schedules")).json()["items"]}
        standard = shown["base_standard_ingestion_workflow"]
        assert standard["enabled"] and standard["status_reason"] is None
        assert standard["next_fire_times"][:2] == ["2026-05-01T12:00:00Z", "2026-05-01T18:00:00Z"]
        stream = shown["base_realtime_stream_ingestion"]
        assert stream["enabled"] and len(started) == 1
        assert stream["last_runs"][0]["run_id"] == str(started[0])
        secure = shown["base_secure_api_ingestion_workflow"]
        assert not secure["enabled"] and "inputs.base_url" in secure["status_reason"]
        assert not shown["base_bulk_file_ingestion_workflow"]["enabled"]


async def test_a_disabled_seed_stays_disabled_and_cannot_be_deleted(env: dict) -> None:
    clock = Clock(NOW)
    name = "base_standard_ingestion_workflow"
    async with controller(env, clock, seed_schedules=True) as (app, client):
        await client.post("/workflows/definitions", json=one_step_spec("standard"), headers=AUTH)
        off = await client.patch(f"/schedules/{name}", json={"enabled": False}, headers=AUTH)
        assert off.status_code == 200
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        await asyncio.gather(ticker.tick(), ticker.tick())
        deleted = await client.delete(f"/schedules/{name}", headers=AUTH)
        assert deleted.status_code == 409 and deleted.json()["error"] == "seed_schedule"
    async with controller(env, clock, seed_schedules=True) as (_, client):
        assert (await client.get(f"/schedules/{name}")).json()["enabled"] is False
