"""The controller says when a part of the platform it relies on is down: /health names the
engine and the outbox relay, and a run no engine starts says why it waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.state.runs import start_runs
from tests.conftest import asgi_client, fresh_schema, reads_with
from tests.controller.test_api import inline_spec

KEY = {"Authorization": "Bearer k-123"}


@pytest.fixture(scope="module")
def own_schema() -> Iterator[str]:
    """A schema nobody else's relay holds the lock of."""
    yield from fresh_schema()


def settings_for(common_env: dict[str, Any], schema: str, **extra: Any) -> ControllerSettings:
    return ControllerSettings(
        **{**common_env, "db_schema": schema},
        api_keys=["k-123"],
        engine_url="http://127.0.0.1:9",  # nothing listens here
        seed_schedules=False,
        **extra,
    )


async def test_a_run_no_engine_starts_says_why_and_health_names_the_engine(
    common_env: dict[str, Any], own_schema: str
) -> None:
    settings = settings_for(common_env, own_schema, unclaimed_after_s=0.3, handoff_interval_s=0.1)
    app = create_app(settings)
    async with asgi_client(app, **reads_with("k-123")) as api:
        body = {"spec": inline_spec(), "inputs": {"n": 1}}
        accepted = await api.post("/coordinate", json=body, headers=KEY)
        assert accepted.status_code == 202, accepted.text
        url = accepted.json()["status_url"]
        reason = None
        for _ in range(100):
            run = (await api.get(url)).json()
            if (reason := run["status_reason"]) is not None:
                break
            await asyncio.sleep(0.1)
        assert run["status"] == "PENDING"
        assert reason is not None and reason.startswith(
            "waiting: no engine has claimed this run for 0.3 s"
        ), reason
        assert "http://127.0.0.1:9 does not answer" in reason

        health = await api.get("/health")
        assert health.status_code == 200  # the controller itself still takes runs
        detail = health.json()
        assert detail["status"] == "degraded", detail
        assert detail["checks"]["engine"].startswith("down: http://127.0.0.1:9 unreachable")
        assert detail["checks"]["relay"] == "ok"  # this controller's own relay leads
        assert detail["checks"]["database"] == "ok" and detail["checks"]["redis"] == "ok"

        # An engine starting the run (the engine's own transition) clears the reason.
        async with app.state.sessionmaker() as session, session.begin():
            assert await start_runs(
                session, [uuid.UUID(accepted.json()["run_id"])], schema=own_schema
            )
        run = (await api.get(url)).json()
        assert run["status"] == "RUNNING" and run["status_reason"] is None


async def test_health_says_when_no_relay_runs(common_env: dict[str, Any], own_schema: str) -> None:
    app = create_app(settings_for(common_env, own_schema, start_loops=False))
    async with asgi_client(app) as api:
        detail = (await api.get("/health")).json()
    assert detail["status"] == "degraded"
    assert detail["checks"]["relay"].startswith("down: no process holds the outbox relay lock")
