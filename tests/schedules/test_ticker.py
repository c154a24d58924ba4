"""The ticker on a real PostgreSQL schema with a hand-moved clock: one run per tick, catch-up,
overlap, jitter, continuous re-triggering, failures, and two controllers ticking at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.orchestrator_controller.schedules.ticker import Ticker
from services.orchestrator_controller.schedules.timing import jitter_for
from tests.schedules.helpers import AUTH, Clock, controller, finish_run, one_step_spec

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def ticker(app: FastAPI, clock: Clock) -> Ticker:
    return Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)


async def make_schedule(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    await client.post("/workflows/definitions", json=one_step_spec("wf"), headers=AUTH)
    body = {"name": "hourly", "workflow": "wf", "cron": "0 * * * *", **fields}
    response = await client.post("/schedules", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def runs_by_fire(app: FastAPI) -> list[tuple[datetime, str | None, str]]:
    """(fire time, run id, outcome) of every fire, oldest first."""
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT fire_at, run_id, outcome FROM schedule_fires ORDER BY fire_at")
        )
        return [(r.fire_at, str(r.run_id) if r.run_id else None, r.outcome) for r in rows]


async def run_count(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(text("SELECT count(*) FROM workflow_runs")) or 0)


async def test_exactly_one_run_per_tick_even_after_a_restart(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        schedule = await make_schedule(client, overlap="allow")
        clock.set(T0 + timedelta(hours=1, seconds=2))
        first = await ticker(app, clock).tick()
        assert len(first) == 1
        assert await ticker(app, clock).tick() == []  # same moment again: nothing new
        fires = await runs_by_fire(app)
        assert fires == [(T0 + timedelta(hours=1), str(first[0]), "started")]
        async with app.state.sessionmaker() as session:
            key = await session.scalar(
                text("SELECT key FROM idempotency_records WHERE resource_id = :id"),
                {"id": str(first[0])},
            )
        assert key == f"schedule:{schedule['id']}:{(T0 + timedelta(hours=1)).isoformat()}"
    # a restarted controller (new app, same database) does not fire the same tick again
    async with controller(env, clock) as (app, client):
        assert await ticker(app, clock).tick() == []
        clock.advance(hours=1)
        assert len(await ticker(app, clock).tick()) == 1
        assert await run_count(app) == 2
        listed = (await client.get("/schedules/hourly")).json()
        assert [f["fire_at"] for f in listed["last_runs"]] == [
            "2026-03-01T02:00:00Z",
            "2026-03-01T01:00:00Z",
        ]
        assert all(f["run_status"] == "PENDING" for f in listed["last_runs"])
        assert listed["next_fire_times"][0] == "2026-03-01T03:00:00Z"


@pytest.mark.parametrize(
    ("catchup", "fired_hours", "missed"),
    [("skip", [], 5), ("latest", [5], 4), ("all", [3, 4, 5], 2)],
)
async def test_catch_up_after_downtime(
    env: dict, catchup: str, fired_hours: list[int], missed: int
) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        await make_schedule(client, catchup=catchup, max_catchup=3, overlap="allow")
        # the controller was down from 00:30 to 05:30: fires at 01..05 were missed
        clock.set(T0 + timedelta(hours=5, minutes=30))
        started = await ticker(app, clock).tick()
        fires = await runs_by_fire(app)
        assert [f[0] for f in fires] == [T0 + timedelta(hours=h) for h in fired_hours]
        assert len(started) == len(fired_hours) == await run_count(app)
        shown = (await client.get("/schedules/hourly")).json()
        assert shown["missed_fires"] == missed
        assert shown["next_fire_times"][0] == "2026-03-01T06:00:00Z"


async def test_skip_still_runs_a_fire_that_is_only_a_little_late(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        await make_schedule(client, catchup="skip")
        clock.set(T0 + timedelta(hours=1, seconds=20))  # within the 60 s misfire grace
        assert len(await ticker(app, clock).tick()) == 1


async def test_overlap_skip_records_the_skipped_tick(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        await make_schedule(client, overlap="skip")
        clock.set(T0 + timedelta(hours=1))
        assert len(await ticker(app, clock).tick()) == 1
        clock.set(T0 + timedelta(hours=2))  # the first run is still PENDING
        assert await ticker(app, clock).tick() == []
        assert [f[2] for f in await runs_by_fire(app)] == ["started", "skipped"]
        assert await run_count(app) == 1


async def test_overlap_buffer_one_runs_one_fire_after_the_previous_ends(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        await make_schedule(client, overlap="buffer_one")
        clock.set(T0 + timedelta(hours=1))
        (first,) = await ticker(app, clock).tick()
        for hour in (2, 3):  # still running: 02:00 is kept, 03:00 dropped
            clock.set(T0 + timedelta(hours=hour))
            assert await ticker(app, clock).tick() == []
        shown = (await client.get("/schedules/hourly")).json()
        assert shown["buffered_fire_at"] == "2026-03-01T02:00:00Z"
        assert [f[2] for f in await runs_by_fire(app)] == ["started", "buffered", "skipped"]
        await finish_run(app.state.sessionmaker, first, schema=env["db_schema"])
        (second,) = await ticker(app, clock).tick()
        fires = await runs_by_fire(app)
        assert fires[1] == (T0 + timedelta(hours=2), str(second), "started")
        assert (await client.get("/schedules/hourly")).json()["buffered_fire_at"] is None
        assert await ticker(app, clock).tick() == []  # the buffer is used up


async def test_overlap_allow_starts_alongside(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        await make_schedule(client, overlap="allow")
        for hour in (1, 2):
            clock.set(T0 + timedelta(hours=hour))
            assert len(await ticker(app, clock).tick()) == 1
        assert await run_count(app) == 2


async def test_jitter_delays_each_fire_by_a_stable_amount(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        schedule = await make_schedule(client, jitter_s=600)
        fire = T0 + timedelta(hours=1)
        delay = jitter_for(schedule["id"], fire, 600)
        assert timedelta(0) < delay < timedelta(seconds=600)
        clock.set(fire + delay - timedelta(seconds=1))
        assert await ticker(app, clock).tick() == []
        clock.set(fire + delay)
        assert len(await ticker(app, clock).tick()) == 1
        assert (await runs_by_fire(app))[0][0] == fire  # keyed by the nominal fire time


async def test_continuous_restarts_after_each_run_with_min_interval_and_backoff(
    env: dict,
) -> None:
    # Starts at real time (run end times come from the database) and only moves forward.
    clock = Clock()
    schema = env["db_schema"]
    failure = {"code": "boom", "message": "source down"}
    async with controller(env, clock) as (app, client):
        await make_schedule(
            client,
            name="stream",
            cron=None,
            continuous=True,
            min_interval_s=60,
            backoff_initial_s=120,
            backoff_max_s=300,
        )
        sessions, tick = app.state.sessionmaker, ticker(app, clock).tick
        (first,) = await tick()
        assert await tick() == []  # still running: no second run
        await finish_run(sessions, first, schema=schema)
        assert await tick() == []  # ended, but starts are at least 60 s apart
        clock.advance(seconds=61)
        (second,) = await tick()
        await finish_run(sessions, second, schema=schema, error=failure)
        clock.advance(seconds=61)
        assert await tick() == []  # failed: back off 120 s after its end
        clock.advance(seconds=60)
        (third,) = await tick()
        await finish_run(sessions, third, schema=schema, error=failure)
        clock.advance(seconds=200)
        assert await tick() == []  # second failure in a row: 240 s
        shown = (await client.get("/schedules/stream")).json()
        assert shown["consecutive_failures"] == 2
        clock.advance(seconds=45)
        (fourth,) = await tick()
        await finish_run(sessions, fourth, schema=schema)
        clock.advance(seconds=61)
        assert len(await tick()) == 1  # success: no backoff, only the 60 s spacing
        shown = (await client.get("/schedules/stream")).json()
        assert shown["consecutive_failures"] == 0
        assert [r["run_status"] for r in shown["last_runs"]] == [
            "PENDING",
            "SUCCEEDED",
            "FAILED",
            "FAILED",
            "SUCCEEDED",
        ]


async def test_a_fire_that_cannot_start_is_recorded_and_the_schedule_goes_on(
    env: dict,
) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with controller(env, clock) as (app, client):
        await make_schedule(client)
        # version 2 of the workflow needs an input the schedule does not give
        v2 = one_step_spec("wf", version=2, inputs={"n": {"type": "integer", "required": True}})
        assert (
            await client.post("/workflows/definitions", json=v2, headers=AUTH)
        ).status_code == 201
        clock.set(T0 + timedelta(hours=1))
        assert await ticker(app, clock).tick() == []
        shown = (await client.get("/schedules/hourly")).json()
        assert shown["last_runs"][0]["outcome"] == "failed"
        assert "inputs.n" in shown["last_runs"][0]["detail"]
        assert "inputs.n" in shown["status_reason"]
        assert shown["next_fire_times"][0] == "2026-03-01T02:00:00Z"
        assert await run_count(app) == 0


async def test_two_controllers_ticking_together_start_one_run_per_tick(env: dict) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    async with (
        controller(env, clock) as (app_a, client),
        controller(env, clock) as (app_b, _),
    ):
        await make_schedule(client, overlap="allow")
        interval = {"name": "every-minute", "workflow": "wf", "interval_s": 60, "overlap": "allow"}
        assert (await client.post("/schedules", json=interval, headers=AUTH)).status_code == 201
        a, b = ticker(app_a, clock), ticker(app_b, clock)
        started: list[Any] = []
        # three hours in 20 s steps; both replicas tick at every step, concurrently
        for _ in range(3 * 180):
            clock.advance(seconds=20)
            for result in await asyncio.gather(a.tick(), b.tick(), a.tick()):
                started += result
        fires = await runs_by_fire(app_a)
        assert len(started) == len(set(started)) == len(fires) == await run_count(app_a)
        assert len(fires) == 3 + 180  # hourly fires + one per minute
        async with app_a.state.sessionmaker() as session:
            per_fire = await session.execute(
                text(
                    "SELECT count(*) FROM idempotency_records WHERE key LIKE 'schedule:%' "
                    "GROUP BY key HAVING count(*) > 1"
                )
            )
            assert per_fire.all() == []
