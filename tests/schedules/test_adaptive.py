"""Adaptive schedules on a real PostgreSQL schema with a hand-moved clock and the real
data-scheduler agent served over HTTP: each next fire follows the agent's answer, stays within
the bounds and shows its reason; with the agent unreachable the schedule keeps firing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from agents.base.settings import AgentSettings
from agents.data_scheduler.app import create_app as create_scheduler
from ml.scheduling_intelligence.history import training_samples
from services.orchestrator_controller.schedules.ticker import Ticker
from shared.db.models import Schedule
from shared.state.runs import start_runs
from shared.state.steps import AttemptResult, claim_steps, record_results
from tests.conftest import service_auth
from tests.schedules.helpers import AUTH, Clock, controller
from tests.serving import serve

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
LOW, HIGH = 300.0, 7200.0
COLLECT_SPEC = {
    "name": "pull",
    "steps": [{"id": "collect", "agent": "data-collector", "action": "collect"}],
}


@pytest.fixture
def scheduler_url(env: dict) -> Iterator[str]:
    with serve(create_scheduler(AgentSettings(**env)), lifespan="on") as url:
        yield url


async def collect_finished(
    sessionmaker: async_sessionmaker, run_id: uuid.UUID, *, schema: str, rows: int
) -> None:
    """Drive the run to its end as the engine would, its collect having found `rows`."""
    async with sessionmaker() as session, session.begin():
        assert await start_runs(session, [run_id], schema=schema)
    async with sessionmaker() as session, session.begin():
        claimed = await claim_steps(session, owner="test", limit=10, lease_s=60, schema=schema)
    results = [
        AttemptResult(step=c, outcome="succeeded", output={"count": rows}, worker="test")
        for c in claimed
    ]
    async with sessionmaker() as session, session.begin():
        await record_results(session, results, schema=schema)


async def make_adaptive(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/workflows/definitions", json=COLLECT_SPEC, headers=AUTH)
    assert response.status_code in (200, 201), response.text
    body = {
        "name": "adaptive-pull",
        "workflow": "pull",
        "mode": "adaptive",
        "min_interval_s": LOW,
        "max_interval_s": HIGH,
    }
    response = await client.post("/schedules", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def shown(client: httpx.AsyncClient) -> dict[str, Any]:
    (item,) = [
        s for s in (await client.get("/schedules")).json()["items"] if s["name"] == "adaptive-pull"
    ]
    return dict(item)


async def fire_and_finish(
    app: FastAPI, ticker: Ticker, clock: Clock, env: dict, rows: int
) -> datetime:
    """Move to the next fire, fire it, end its run with `rows` collected, let the ticker decide."""
    async with app.state.sessionmaker() as session:
        fire_at = await session.scalar(select(Schedule.next_fire_at))
    assert fire_at is not None
    clock.set(fire_at)
    (run_id,) = await ticker.tick()
    await collect_finished(app.state.sessionmaker, run_id, schema=env["db_schema"], rows=rows)
    clock.advance(seconds=5)
    assert await ticker.tick() == []  # the decision, no run
    return fire_at


async def test_an_adaptive_schedule_follows_the_scheduler_agent(
    env: dict, scheduler_url: str
) -> None:
    clock = Clock(T0)
    async with controller(env, clock, agent_urls={"data-scheduler": scheduler_url}) as (
        app,
        client,
    ):
        created = await make_adaptive(client)
        assert created["trigger"] == "adaptive" and created["decision"] is None
        assert created["next_fire_times"] == ["2026-03-02T00:05:00Z"]
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        history: list[dict[str, Any]] = []
        intervals = set()
        try:
            # busy collects, then a silence, then rows again
            for rows in [6, 9, 4, 7, 5, 8] * 2 + [0] * 10 + [3, 5]:
                fire_at = await fire_and_finish(app, ticker, clock, env, rows)
                history.append({"at": fire_at.isoformat(), "rows": rows})
                item = await shown(client)
                decision = item["decision"]
                assert decision["source"] == "baseline" and decision["model"] == (
                    "scheduling_intelligence"
                )
                assert decision["version"] is None
                interval = decision["interval_s"]
                assert LOW <= interval <= HIGH
                next_fire = datetime.fromisoformat(item["next_fire_times"][0])
                assert next_fire == fire_at + timedelta(seconds=interval)
                assert decision["reason"] and decision["next_fire_at"] == item["next_fire_times"][0]
                # exactly what the agent answers for that history
                async with httpx.AsyncClient() as http:
                    direct = (
                        await http.post(
                            f"{scheduler_url}/api/v1/next_interval",
                            json={
                                "history": history,
                                "min_interval_s": LOW,
                                "max_interval_s": HIGH,
                            },
                            headers=service_auth(),
                        )
                    ).json()
                assert direct["interval_s"] == pytest.approx(interval, abs=1e-3)
                assert direct["reason"] == decision["reason"]
                intervals.add(round(interval))
        finally:
            await ticker.adviser.aclose()
        # the history moved the interval: not one fixed cadence
        assert len(intervals) > 1, decision["reason"]
    # the same collects are training data for the scheduling model (a time-sliced hold-out)
    found = await asyncio.to_thread(training_samples, env["database_url"], env["db_schema"])
    assert (found.sources, found.collects, found.problem) == (1, len(history), None)
    assert len(found.train.xs) > len(found.held_out.xs) > 0


async def test_an_unreachable_scheduler_agent_falls_back_and_the_schedule_keeps_firing(
    env: dict,
) -> None:
    clock = Clock(T0)
    async with controller(env, clock, agent_urls={"data-scheduler": "http://127.0.0.1:9"}) as (
        app,
        client,
    ):
        await make_adaptive(client)
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        try:
            first = await fire_and_finish(app, ticker, clock, env, rows=3)
            decision = (await shown(client))["decision"]
            assert decision["source"] == "fallback" and "unavailable" in decision["reason"]
            assert "midpoint" in decision["reason"] and decision["interval_s"] == (LOW + HIGH) / 2
            second = await fire_and_finish(app, ticker, clock, env, rows=0)
            assert second == first + timedelta(seconds=(LOW + HIGH) / 2)
            assert "the last interval" in (await shown(client))["decision"]["reason"]
            # a run that never ends: the next fire waits at most the longest interval, is
            # skipped while the run goes on, and the schedule keeps its clock
            third = (await shown(client))["next_fire_times"][0]
            clock.set(datetime.fromisoformat(third))
            (run_id,) = await ticker.tick()
            item = await shown(client)
            provisional = datetime.fromisoformat(item["next_fire_times"][0])
            assert provisional == datetime.fromisoformat(third) + timedelta(seconds=HIGH)
            clock.set(provisional)
            assert await ticker.tick() == []
            item = await shown(client)
            assert item["last_runs"][0]["outcome"] == "skipped"
            assert datetime.fromisoformat(item["next_fire_times"][0]) == provisional + timedelta(
                seconds=HIGH
            )
        finally:
            await ticker.adviser.aclose()


async def test_adaptive_bounds_are_validated(env: dict) -> None:
    async with controller(env, Clock(T0)) as (_, client):
        await client.post("/workflows/definitions", json=COLLECT_SPEC, headers=AUTH)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"mode": "adaptive", "min_interval_s": 60}, "max_interval_s"),
            ({"mode": "adaptive", "min_interval_s": 600, "max_interval_s": 60}, "max_interval_s"),
            ({"mode": "adaptive", "max_interval_s": 60, "cron": "@daily"}, "cron"),
            ({"interval_s": 60, "max_interval_s": 600}, "max_interval_s"),
        ]
        for body, field in cases:
            response = await client.post(
                "/schedules", json={"name": "bad", "workflow": "pull", **body}, headers=AUTH
            )
            assert response.status_code == 422 and field in response.text, response.text
