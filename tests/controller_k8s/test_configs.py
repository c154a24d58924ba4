"""Config resources set the controller's live settings: the sync loop against the fake
Kubernetes API (see fake_kube_api.py), shown by a real controller on a real PostgreSQL schema:
its request limits, its log, its schedule ticker and GET /config."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kubernetes import client

from agents.base.settings import AgentSettings
from agents.data_connector.app import create_app as create_connector
from services.orchestrator_controller.kubernetes.bridge import build_config_sync
from services.orchestrator_controller.kubernetes.configs import ConfigResources
from services.orchestrator_controller.kubernetes.informer import Informer
from services.orchestrator_controller.schedules.ticker import Ticker
from tests.schedules.helpers import (
    AUTH,
    Clock,
    controller,
    one_step_spec,
)
from tests.schedules.test_ticker import T0, make_schedule, run_count
from tests.serving import serve

from .fake_kube_api import FakeKubeApi
from .helpers import NAMESPACE, eventually, reported
from .helpers import condition as ready

pytestmark = pytest.mark.timeout(120)
PLURAL = "configs"
# No resync within a test: every change reaches the controller through the watch.
RESYNC_S = 3600.0


@pytest.fixture(autouse=True)
def restore_log_level() -> Iterator[None]:
    """The log level is the process's: give it back as it was to the tests that follow."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def config(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ingestion.platform.io/v1alpha1",
        "kind": "Config",
        "metadata": {"name": name},
        "spec": spec,
    }


@asynccontextmanager
async def live(
    env: dict, api_client: client.ApiClient, clock: Clock | None = None, /, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Informer]]:
    """A controller whose Config informer runs (no resync within a test), as app.py wires it."""
    settings = {"kubernetes_namespace": NAMESPACE, "config_resync_s": RESYNC_S, **overrides}
    async with controller(env, clock, **settings) as (app, http):
        sync = build_config_sync(app.state.settings, api_client)
        task = asyncio.create_task(sync.run())
        try:
            yield app, http, sync
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def sync_once(sync: Informer) -> str | None:
    """One list and reconcile, as at a resync; what is in force after it."""
    await sync.resync()
    assert isinstance(sync.kind, ConfigResources)
    return sync.kind.applied


async def in_force(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Each live setting as GET /config shows it: {name: {value, source, ...}}."""
    response = await http.get("/config")
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


def shows(http: httpx.AsyncClient, **expected: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        settings = await in_force(http)
        return all(settings[k]["value"] == v for k, v in expected.items())

    return check


def padded(name: str, version: int, size: int) -> dict[str, Any]:
    """A one-step spec of about `size` bytes (a long param)."""
    spec = one_step_spec(name, version=version, inputs={"deep": {"type": "object"}})
    spec["steps"][0]["params"] = {"note": "x" * size}
    return spec


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_create_update_delete_change_the_limits_live(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    async with live(env, api_client, max_nesting_depth=16) as (app, http, _):
        settings = await in_force(http)
        assert settings["max_nesting_depth"]["value"] == 16
        assert settings["max_nesting_depth"]["source"] == "settings"
        assert settings["max_spec_bytes"] == {
            **settings["max_spec_bytes"],
            "value": 256 * 1024,
            "source": "default",
            "resource_field": "maxSpecBytes",
            "environment": "CONTROLLER_MAX_SPEC_BYTES",
        }
        register = "/workflows/definitions"
        assert (await http.post(register, json=padded("big", 1, 3000), headers=AUTH)).is_success
        inputs = {"deep": nested(8)}
        coordinate = {"workflow": "big", "inputs": inputs}
        assert (await http.post("/coordinate", json=coordinate, headers=AUTH)).status_code == 202

        # Created: a spec of 3000 bytes is now too large, naming the limit.
        fake.apply(config("platform", maxSpecBytes=2048, logLevel="info"), NAMESPACE)
        await eventually(shows(http, max_spec_bytes=2048), "created")
        refused = await http.post(register, json=padded("big", 2, 3000), headers=AUTH)
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"] == "spec_too_large"
        assert "2048" in refused.json()["message"]
        assert "CONTROLLER_MAX_SPEC_BYTES" in refused.json()["message"]
        settings = await in_force(http)
        assert settings["max_spec_bytes"]["source"] == "resource platform"
        assert settings["max_nesting_depth"]["source"] == "settings"
        assert (await http.get("/config")).json()["resource"] == "platform"
        await eventually(reported(fake, "platform"), "status")
        resource = fake.get("platform", NAMESPACE)
        assert (ready(resource)["status"], ready(resource)["reason"]) == ("True", "Applied")
        assert "maxSpecBytes" in ready(resource)["message"]
        status = resource["status"]
        assert status["observedGeneration"] == 1
        assert status["inForce"]["maxSpecBytes"] == 2048
        assert status["inForce"]["maxNestingDepth"] == 16
        assert status["sources"]["maxSpecBytes"] == "resource platform"
        assert status["sources"]["maxNestingDepth"] == "settings"
        assert status["sources"]["scheduleTickSeconds"] == "default"

        # Updated: the spec limit goes back to the settings', the nesting limit is lowered.
        fake.apply(config("platform", maxNestingDepth=4), NAMESPACE)
        await eventually(shows(http, max_nesting_depth=4), "updated")
        assert (await in_force(http))["max_spec_bytes"]["value"] == 256 * 1024
        assert (await http.post(register, json=padded("big", 2, 3000), headers=AUTH)).is_success
        too_deep = await http.post("/coordinate", json=coordinate, headers=AUTH)
        assert too_deep.status_code == 422, too_deep.text
        assert too_deep.json()["error"] == "too_deep"
        assert "CONTROLLER_MAX_NESTING_DEPTH" in too_deep.json()["message"]
        await eventually(reported(fake, "platform"), "status")
        assert fake.get("platform", NAMESPACE)["status"]["observedGeneration"] == 2

        # The body cap is read at each request too.
        fake.apply(config("platform", maxBodyBytes=4096), NAMESPACE)
        await eventually(shows(http, max_body_bytes=4096), "body cap")
        large = await http.post(register, json=padded("big", 3, 5000), headers=AUTH)
        assert large.status_code == 413 and large.json()["error"] == "body_too_large"
        assert "CONTROLLER_MAX_BODY_BYTES" in large.json()["message"]

        # Deleted: every setting back to the environment's (or the default).
        fake.delete("platform", NAMESPACE)
        await eventually(shows(http, max_body_bytes=2 * 1024 * 1024), "deleted")
        settings = await in_force(http)
        assert settings["max_nesting_depth"]["value"] == 16
        assert settings["max_nesting_depth"]["source"] == "settings"
        assert {s["source"] for n, s in settings.items() if n != "max_nesting_depth"} == {"default"}
        assert (await http.get("/config")).json()["resource"] is None
        assert (await http.post("/coordinate", json=coordinate, headers=AUTH)).status_code == 202


async def test_the_log_level_changes_what_is_logged(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_api

    def request_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "http.request"]

    async with live(env, api_client) as (_, http, _):
        await http.get("/config")
        assert any("GET /config 200" in line for line in request_lines())

        fake.apply(config("platform", logLevel="warning"), NAMESPACE)
        await eventually(shows(http, log_level="warning"), "warning")
        assert "live setting log_level: info -> warning (resource platform)" in caplog.text
        caplog.clear()
        await http.get("/config")
        await http.get("/workflows/definitions/nothing-here")  # a 4xx is still a warning
        lines = request_lines()
        assert not any("GET /config 200" in line for line in lines)
        assert any("nothing-here 405" in line for line in lines)
        assert not logging.getLogger("services.orchestrator_controller").isEnabledFor(logging.INFO)

        fake.apply(config("platform", logLevel="debug"), NAMESPACE)
        await eventually(shows(http, log_level="debug"), "debug")
        assert logging.getLogger("services.orchestrator_controller").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)

        fake.delete("platform", NAMESPACE)
        await eventually(shows(http, log_level="info"), "deleted")
        assert logging.getLogger().level == logging.INFO
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        caplog.clear()
        await http.get("/config")
        assert any("GET /config 200" in line for line in request_lines())


async def test_the_schedule_tick_changes_live(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    """A ticker started with an hour's tick fires a due schedule within a second of a Config
    resource setting a short one: the period is read live, even during a sleep."""
    fake = fake_api
    clock = Clock(T0 + timedelta(minutes=30))
    async with live(env, api_client, clock, schedule_tick_s=3600) as (app, http, _):
        await make_schedule(http, overlap="allow")
        clock.set(T0 + timedelta(hours=1, seconds=2))
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        task = asyncio.create_task(ticker.run())
        try:
            await asyncio.sleep(1.0)
            assert await run_count(app) == 0  # the hour's tick has not come

            fake.apply(config("platform", scheduleTickSeconds=0.05), NAMESPACE)
            await eventually(shows(http, schedule_tick_s=0.05), "applied")

            async def fired() -> bool:
                return await run_count(app) == 1

            await eventually(fired, "the due schedule fired by the new tick")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_setting_that_needs_a_restart_is_refused(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    async with live(env, api_client) as (app, http, _):
        fake.apply(
            config(
                "platform",
                databaseUrl="postgresql+asyncpg://elsewhere/db",
                kubernetesNamespace="other",
                maxSpecBytes=2048,
            ),
            NAMESPACE,
        )
        await eventually(reported(fake, "platform"), "status")
        condition = ready(fake.get("platform", NAMESPACE))
        assert (condition["status"], condition["reason"]) == ("False", "RestartRequired")
        message = condition["message"]
        assert "spec.databaseUrl: needs a restart (DATABASE_URL" in message
        namespace = "spec.kubernetesNamespace: needs a restart (CONTROLLER_KUBERNETES_NAMESPACE"
        assert namespace in message
        assert "restart it" in message and "not applied" in message
        # Nothing of it applies, not even its live field.
        settings = await in_force(http)
        assert settings["max_spec_bytes"]["value"] == 256 * 1024
        assert settings["max_spec_bytes"]["source"] == "default"
        assert app.state.settings.database_url != "postgresql+asyncpg://elsewhere/db"
        status = fake.get("platform", NAMESPACE)["status"]
        assert status["inForce"]["maxSpecBytes"] == 256 * 1024
        restart = (await http.get("/config")).json()["restart_required"]
        assert {"DATABASE_URL", "CONTROLLER_PORT", "SERVICE_TOKEN"} <= set(restart)

        # Fixed: it applies.
        fake.apply(config("platform", maxSpecBytes=2048), NAMESPACE)
        await eventually(shows(http, max_spec_bytes=2048), "fixed")
        await eventually(reported(fake, "platform"), "status")
        assert ready(fake.get("platform", NAMESPACE))["reason"] == "Applied"


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"scheduleTickSeconds": 0}, "spec.scheduleTickSeconds: Input should be greater than 0"),
        ({"logLevel": "chatty"}, "spec.logLevel: Input should be"),
        ({"maxNestingDepth": 1000}, "spec.maxNestingDepth: Input should be less than"),
        ({"tickRate": 1}, "spec.tickRate: not a live setting of the controller"),
        ({"orchestrators": {}}, "spec.orchestrators: the managers are configured live by"),
    ],
)
async def test_an_invalid_resource_is_refused(
    env: dict,
    fake_api: FakeKubeApi,
    api_client: client.ApiClient,
    spec: dict[str, Any],
    complaint: str,
) -> None:
    fake = fake_api
    fake.apply(config("platform", **spec, maxSpecBytes=2048), NAMESPACE)
    async with controller(env, kubernetes_namespace=NAMESPACE) as (app, _):
        sync = build_config_sync(app.state.settings, api_client)
        assert await sync_once(sync) is None
        condition = ready(fake.get("platform", NAMESPACE))
        assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
        assert complaint in condition["message"]
        assert app.state.settings.live.current.max_spec_bytes == 256 * 1024


async def test_a_second_resource_is_a_conflict(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    fake.apply(config("a-newer", maxSpecBytes=4096), NAMESPACE)
    fake.apply(config("z-older", maxSpecBytes=2048), NAMESPACE)
    # The oldest wins, whatever its name.
    fake.backdate("z-older", "2020-01-01T00:00:00Z", NAMESPACE)
    async with live(env, api_client) as (_, http, _):
        await eventually(shows(http, max_spec_bytes=2048), "the oldest")
        await eventually(reported(fake, "a-newer", "z-older"), "statuses")
        conflict = ready(fake.get("a-newer", NAMESPACE))
        assert (conflict["status"], conflict["reason"]) == ("False", "Conflict")
        assert "z-older" in conflict["message"]
        assert ready(fake.get("z-older", NAMESPACE))["reason"] == "Applied"
        # Each status shows what is in force, whoever set it.
        assert fake.get("a-newer", NAMESPACE)["status"]["inForce"]["maxSpecBytes"] == 2048

        fake.delete("z-older", NAMESPACE)
        await eventually(shows(http, max_spec_bytes=4096), "the other")

        async def applied() -> bool:
            return ready(fake.get("a-newer", NAMESPACE))["reason"] == "Applied"

        await eventually(applied, "the other's status")


async def test_status_is_written_only_when_it_changes(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    fake.apply(config("platform", handoffIntervalSeconds=0.5), NAMESPACE)
    async with controller(env, kubernetes_namespace=NAMESPACE) as (app, _):
        sync = build_config_sync(app.state.settings, api_client)
        assert await sync_once(sync) == "platform"
        assert app.state.settings.live.current.handoff_interval_s == 0.5
        assert len(fake.status_patches("platform")) == 1
        await sync_once(sync)
        assert len(fake.status_patches("platform")) == 1
        # A follower puts it in force and leaves the status to the leader.
        fake.apply(config("platform", handoffIntervalSeconds=0.25), NAMESPACE)
        follower = build_config_sync(app.state.settings, api_client, is_leader=lambda: False)
        assert await sync_once(follower) == "platform"
        assert app.state.settings.live.current.handoff_interval_s == 0.25
        assert len(fake.status_patches("platform")) == 1


async def test_the_last_settings_stay_while_the_api_is_unreachable(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_api
    fake.apply(config("platform", maxSpecBytes=2048), NAMESPACE)
    async with live(env, api_client) as (app, http, _):
        await eventually(shows(http, max_spec_bytes=2048), "applied")
        fake.stop()
        # Its kept-alive connections would still be served: the next request opens a new one.
        api_client.rest_client.pool_manager.clear()

        async def failed() -> bool:
            return "the Kubernetes API is unreachable" in caplog.text

        await eventually(failed, "the loop saying the API is unreachable")
        await asyncio.sleep(1.5)  # the loop keeps failing (backing off), and keeps going
        assert app.state.settings.live.current.max_spec_bytes == 2048
        settings = await in_force(http)
        assert settings["max_spec_bytes"]["source"] == "resource platform"


async def test_a_config_s_log_level_reaches_every_engine_and_agent(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    agent = create_connector(AgentSettings(**env, log_level="warning", live_settings_poll_s=0.1))
    async with controller(env, kubernetes_namespace=NAMESPACE, config_resync_s=RESYNC_S) as (
        app,
        _http,
    ):
        sync = build_config_sync(
            app.state.settings, api_client, sessionmaker=app.state.sessionmaker
        )
        task = asyncio.create_task(sync.run())
        try:
            with serve(agent, lifespan="on"):
                follower = agent.state.log_level
                assert follower.current == "warning"  # its own LOG_LEVEL, until a Config says

                fake_api.apply(config("platform", logLevel="debug"), NAMESPACE)
                await eventually(lambda: follower.current == "debug", "the agent follows")
                assert follower.source == "resource platform"
                assert logging.getLogger().level == logging.DEBUG

                # A Config without logLevel: every service back to its own.
                fake_api.apply(config("platform", maxSpecBytes=4096), NAMESPACE)
                await eventually(lambda: follower.current == "warning", "back to its own")
                fake_api.apply(config("platform", logLevel="error"), NAMESPACE)
                await eventually(lambda: follower.current == "error", "again")
                fake_api.delete("platform", NAMESPACE)
                await eventually(lambda: follower.current == "warning", "deleted")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
