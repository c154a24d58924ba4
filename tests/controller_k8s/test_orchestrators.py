"""Orchestrator resources configure the five managers live: the controller's sync loop against
the fake Kubernetes API (see fake_kube_api.py), shown by admission decisions of a real
controller on a real PostgreSQL schema and by GET /orchestrators."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kubernetes import client

from services.orchestrator_controller.kubernetes.bridge import build_orchestrator_sync
from services.orchestrator_controller.kubernetes.informer import Informer
from services.orchestrator_controller.kubernetes.orchestrators import OrchestratorResources
from services.orchestrator_controller.policies.config import OrchestratorsConfig
from tests.policies.test_admission import admission_round, admitted, shown, submit
from tests.schedules.helpers import controller

from .fake_kube_api import FakeKubeApi
from .helpers import NAMESPACE, eventually, reported
from .helpers import condition as ready

pytestmark = pytest.mark.timeout(120)
PLURAL = "orchestrators"
# No resync within a test: every change reaches the controller through the watch.
RESYNC_S = 3600.0
URL = {"url": "https://api.example.com/v1"}


def orchestrator(name: str, kind: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ingestion.platform.io/v1alpha1",
        "kind": "Orchestrator",
        "metadata": {"name": name},
        "spec": {"type": kind, **spec},
    }


@asynccontextmanager
async def live(
    env: dict, api_client: client.ApiClient, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Informer]]:
    """A controller whose Orchestrator informer runs (no resync within a test), as app.py wires
    it."""
    settings = {"kubernetes_namespace": NAMESPACE, "orchestrator_resync_s": RESYNC_S}
    async with controller(env, **settings, **overrides) as (app, http):
        sync = build_orchestrator_sync(app.state.settings, app.state.policies, api_client)
        task = asyncio.create_task(sync.run())
        try:
            yield app, http, sync
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def sync_once(sync: Informer) -> dict[str, str]:
    """One list and reconcile, as at a resync; what is in force after it."""
    await sync.resync()
    assert isinstance(sync.kind, OrchestratorResources)
    return sync.kind.applied


async def in_force(http: httpx.AsyncClient, manager: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(config, sources) of one manager, as GET /orchestrators shows them."""
    response = await http.get("/orchestrators")
    assert response.status_code == 200, response.text
    (item,) = [i for i in response.json()["items"] if i["name"] == manager]
    assert item["paused"] == item["config"]["paused"]
    return item["config"], item["sources"]


def shows(http: httpx.AsyncClient, manager: str, **expected: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        config, _ = await in_force(http, manager)
        return all(config[k] == v for k, v in expected.items())

    return check


async def test_create_update_delete_change_admission_live(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    settings = {"orchestrators": {"ingestion_manager": {"max_concurrent_runs": 2}}}
    async with live(env, api_client, **settings) as (app, http, _):
        config, sources = await in_force(http, "ingestion-manager")
        assert config["max_concurrent_runs"] == 2 and sources["max_concurrent_runs"] == "settings"

        # Created: one standard run at a time; the API manager's runs are not held back.
        fake.apply(orchestrator("ingestion-manager", "ingestion", maxConcurrentRuns=1), NAMESPACE)
        await eventually(shows(http, "ingestion-manager", max_concurrent_runs=1), "created")
        first, second = await submit(http), await submit(http)
        other = await submit(http, "pull", kind="secure_api", inputs=URL)
        assert await admitted(app, first) and await admitted(app, other)
        assert not await admitted(app, second)
        assert await shown(http, second) == (
            "PENDING",
            "waiting: ingestion-manager at its concurrency cap 1",
        )
        _, sources = await in_force(http, "ingestion-manager")
        assert sources["max_concurrent_runs"] == "resource ingestion-manager"
        assert sources["kinds"] == "default"
        await eventually(reported(fake, "ingestion-manager"), "status")
        status = fake.get("ingestion-manager", NAMESPACE)["status"]
        assert ready(fake.get("ingestion-manager", NAMESPACE))["reason"] == "Applied"
        assert ready(fake.get("ingestion-manager", NAMESPACE))["status"] == "True"
        assert status["observedGeneration"] == 1
        assert status["inForce"]["maxConcurrentRuns"] == 1
        assert status["inForce"]["workflowKinds"] == ["standard", "test"]
        assert status["sources"]["maxConcurrentRuns"] == "resource ingestion-manager"

        # Updated: the new value applies, and the waiting run is admitted.
        fake.apply(orchestrator("ingestion-manager", "ingestion", maxConcurrentRuns=3), NAMESPACE)
        await eventually(shows(http, "ingestion-manager", max_concurrent_runs=3), "updated")
        assert await admission_round(app) == [second]
        await eventually(reported(fake, "ingestion-manager"), "status")
        assert fake.get("ingestion-manager", NAMESPACE)["status"]["observedGeneration"] == 2

        # Deleted: back to the settings' value (2): a third standard run waits.
        fake.delete("ingestion-manager", NAMESPACE)
        await eventually(shows(http, "ingestion-manager", max_concurrent_runs=2), "deleted")
        _, sources = await in_force(http, "ingestion-manager")
        assert sources["max_concurrent_runs"] == "settings"
        third = await submit(http)
        assert await shown(http, third) == (
            "PENDING",
            "waiting: ingestion-manager at its concurrency cap 2",
        )


async def test_status_is_written_only_when_it_changes(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    fake.apply(orchestrator("files", "file", maxFanout=4), NAMESPACE)
    async with controller(env, kubernetes_namespace=NAMESPACE) as (app, _):
        sync = build_orchestrator_sync(app.state.settings, app.state.policies, api_client)
        assert await sync_once(sync) == {"file_manager": "files"}
        assert app.state.policies.config.file_manager.max_fanout == 4
        patches = len(fake.status_patches("files"))
        assert patches == 1
        await sync_once(sync)
        assert len(fake.status_patches("files")) == patches
        # Its type changed: the other manager's fields leave the status.
        fake.apply(orchestrator("files", "stream", maxConcurrentRuns=3), NAMESPACE)
        assert await sync_once(sync) == {"stream_manager": "files"}
        status = fake.get("files", NAMESPACE)["status"]
        assert "maxFanout" not in status["inForce"] and status["inForce"]["maxConcurrentRuns"] == 3
        assert "backpressureQueueSize" in status["sources"] and "chunkSize" not in status["sources"]
        assert app.state.policies.config.file_manager.max_fanout == 16


async def test_an_invalid_resource_is_refused_and_the_others_apply(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    # Claims the API manager's kind: the whole would be invalid.
    fake.apply(
        orchestrator("files", "file", workflowKinds=["bulk_file", "secure_api"], maxFanout=2),
        NAMESPACE,
    )
    fake.apply(orchestrator("batch", "batch", maxConcurrentRuns=0), NAMESPACE)
    fake.apply(orchestrator("ingest", "ingestion", hostConcurrency=2), NAMESPACE)
    fake.apply(orchestrator("streams", "stream", maxConcurrentRuns=1), NAMESPACE)
    async with live(env, api_client) as (app, http, _):
        await eventually(shows(http, "stream-manager", max_concurrent_runs=1), "the valid one")
        await eventually(reported(fake, "files", "batch", "ingest", "streams"), "statuses")
        files = ready(fake.get("files", NAMESPACE))
        assert (files["status"], files["reason"]) == ("False", "InvalidSpec")
        assert "secure_api" in files["message"] and "api_manager" in files["message"]
        batch = ready(fake.get("batch", NAMESPACE))
        assert batch["reason"] == "InvalidSpec" and "spec.maxConcurrentRuns" in batch["message"]
        ingest = ready(fake.get("ingest", NAMESPACE))
        assert ingest["reason"] == "InvalidSpec"
        assert "spec.hostConcurrency: not a field of the ingestion manager" in ingest["message"]
        assert ready(fake.get("streams", NAMESPACE))["reason"] == "Applied"
        # The refused resource's manager keeps its settings' values; its status says so.
        assert fake.get("files", NAMESPACE)["status"]["inForce"]["maxFanout"] == 16
        config, sources = await in_force(http, "file-manager")
        assert config["kinds"] == ["bulk_file"] and config["max_fanout"] == 16
        assert set(sources.values()) == {"default"}
        assert (await in_force(http, "batch-manager"))[0]["max_concurrent_runs"] == 500

        # Admission: the API run goes to the API manager; the second stream run waits.
        api = await submit(http, "pull", kind="secure_api", inputs=URL)
        one, two = [await submit(http, "s", kind="realtime_stream") for _ in range(2)]
        assert await admitted(app, api) and await admitted(app, one)
        assert await shown(http, two) == (
            "PENDING",
            "waiting: stream-manager at its concurrency cap 1",
        )

        # Fixed: it applies.
        fake.apply(orchestrator("files", "file", maxFanout=2), NAMESPACE)
        await eventually(shows(http, "file-manager", max_fanout=2), "fixed")
        await eventually(reported(fake, "files"), "status")
        assert ready(fake.get("files", NAMESPACE))["reason"] == "Applied"


async def test_kinds_can_move_between_managers_in_one_edit(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    """Two resources valid only together (a kind moved from one manager to another) apply."""
    fake = fake_api
    fake.apply(orchestrator("files", "file", workflowKinds=["bulk_file", "resilient_fetch"]))
    fake.apply(orchestrator("apis", "api", workflowKinds=["secure_api"]))
    async with controller(env, kubernetes_namespace=NAMESPACE) as (app, _):
        sync = build_orchestrator_sync(app.state.settings, app.state.policies, api_client)
        assert await sync_once(sync) == {"file_manager": "files", "api_manager": "apis"}
        assert app.state.policies.config.manager_of("resilient_fetch") == "file_manager"


async def test_a_second_resource_of_a_type_is_a_conflict(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    fake.apply(orchestrator("a-newer", "batch", maxConcurrentRuns=7), NAMESPACE)
    fake.apply(orchestrator("z-older", "batch", maxConcurrentRuns=1), NAMESPACE)
    # The oldest wins, whatever its name.
    fake.backdate("z-older", "2020-01-01T00:00:00Z", NAMESPACE)
    async with live(env, api_client) as (app, http, _):
        await eventually(shows(http, "batch-manager", max_concurrent_runs=1), "the oldest")
        await eventually(reported(fake, "a-newer", "z-older"), "statuses")
        conflict = ready(fake.get("a-newer", NAMESPACE))
        assert (conflict["status"], conflict["reason"]) == ("False", "Conflict")
        assert "z-older" in conflict["message"]
        assert ready(fake.get("z-older", NAMESPACE))["reason"] == "Applied"
        first, second = await submit(http), await submit(http, "other", kind="secure_api")
        assert await admitted(app, first) and not await admitted(app, second)
        assert await shown(http, second) == (
            "PENDING",
            "waiting: overall concurrency cap 1 reached",
        )

        fake.delete("z-older", NAMESPACE)
        await eventually(shows(http, "batch-manager", max_concurrent_runs=7), "the other")
        await eventually(
            lambda: asyncio.sleep(0, ready(fake.get("a-newer", NAMESPACE))["reason"] == "Applied"),
            "the other's status",
        )
        assert ready(fake.get("a-newer", NAMESPACE))["reason"] == "Applied"
        assert await admission_round(app) == [second]


async def test_precedence_defaults_then_settings_then_the_resource(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_api
    monkeypatch.setenv(
        "CONTROLLER_ORCHESTRATORS",
        json.dumps({"api_manager": {"host_concurrency": 2, "host_rate_limit": 7}}),
    )
    fake.apply(orchestrator("apis", "api", hostRateLimit=9, maxConcurrentRuns=50), NAMESPACE)
    async with live(env, api_client) as (app, http, _):
        await eventually(shows(http, "api-manager", host_rate_limit=9), "the resource")
        await eventually(reported(fake, "apis"), "status")
        config, sources = await in_force(http, "api-manager")
        # In the settings and not in the resource: the settings' value.
        assert config["host_concurrency"] == 2 and sources["host_concurrency"] == "settings"
        # In both: the resource's.
        assert config["host_rate_limit"] == 9 and sources["host_rate_limit"] == "resource apis"
        # Only in the resource, and in neither.
        assert config["max_concurrent_runs"] == 50
        assert sources["max_concurrent_runs"] == "resource apis"
        assert config["host_inputs"] == OrchestratorsConfig().api_manager.host_inputs
        assert sources["host_inputs"] == "default"
        status = fake.get("apis", NAMESPACE)["status"]
        assert status["inForce"]["hostConcurrency"] == 2
        assert status["sources"]["hostConcurrency"] == "settings"
        # The settings' host cap of 2 is what admission applies.
        runs = [await submit(http, "pull", kind="secure_api", inputs=URL) for _ in range(3)]
        assert [await admitted(app, r) for r in runs] == [True, True, False]
        assert await shown(http, runs[2]) == (
            "PENDING",
            "waiting: host api.example.com at its concurrency cap 2",
        )


async def test_pause_then_unpause(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake = fake_api
    async with live(env, api_client) as (app, http, _):
        fake.apply(orchestrator("ingestion-manager", "ingestion", paused=True), NAMESPACE)
        await eventually(shows(http, "ingestion-manager", paused=True), "paused")
        held = await submit(http)
        other = await submit(http, "pull", kind="secure_api", inputs=URL)
        assert await admitted(app, other) and not await admitted(app, held)
        assert await shown(http, held) == ("PENDING", "waiting: ingestion-manager paused")
        assert await admission_round(app) == []
        assert (await shown(http, held))[0] == "PENDING"  # waiting, never failed

        fake.apply(orchestrator("ingestion-manager", "ingestion", paused=False), NAMESPACE)
        await eventually(shows(http, "ingestion-manager", paused=False), "unpaused")
        assert await admission_round(app) == [held]
        assert await shown(http, held) == ("PENDING", None)

        # A paused batch manager admits nothing at all, of any kind.
        fake.apply(orchestrator("batch-manager", "batch", paused=True), NAMESPACE)
        await eventually(shows(http, "batch-manager", paused=True), "batch paused")
        api = await submit(http, "pull", kind="secure_api", inputs={"url": "https://b.io"})
        plain = await submit(http, "plain")
        for run in (api, plain):
            assert await shown(http, run) == ("PENDING", "waiting: batch-manager paused")
        fake.delete("batch-manager", NAMESPACE)
        await eventually(shows(http, "batch-manager", paused=False), "batch resource deleted")
        assert sorted(await admission_round(app)) == sorted([api, plain])


async def test_the_last_configuration_stays_while_the_api_is_unreachable(
    env: dict, fake_api: FakeKubeApi, api_client: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_api
    fake.apply(orchestrator("streams", "stream", maxConcurrentRuns=1), NAMESPACE)
    async with live(env, api_client) as (app, http, _):
        await eventually(shows(http, "stream-manager", max_concurrent_runs=1), "applied")
        fake.stop()
        # Its kept-alive connections would still be served: the next request opens a new one.
        api_client.rest_client.pool_manager.clear()

        async def failed() -> bool:
            return "the Kubernetes API is unreachable" in caplog.text

        await eventually(failed, "the loop saying the API is unreachable")
        await asyncio.sleep(1.5)  # the loop keeps failing (backing off), and keeps going
        assert app.state.policies.config.stream_manager.max_concurrent_runs == 1
        config, sources = await in_force(http, "stream-manager")
        assert config["max_concurrent_runs"] == 1
        assert sources["max_concurrent_runs"] == "resource streams"
