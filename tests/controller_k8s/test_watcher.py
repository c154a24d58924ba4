"""The Workflow kind's informer against a fake Kubernetes API server (see conftest.py).

No Kubernetes API server can run on these machines: the fake in fake_kube_api.py answers the
list, watch and status-patch endpoints over real HTTP, and the watcher talks to it through the
official kubernetes client. Registration uses the real WorkflowSpec validation.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from services.orchestrator_controller.kubernetes import WorkflowResourceWatcher
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.spec.models import WorkflowSpec
from tests.polling import eventually

from .fake_kube_api import FakeKubeApi

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parents[2] / "helm/ingestion-platform/examples/workflows"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def example(kind: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{kind}.yaml").read_text())


class Registry:
    """The controller's side as the watcher sees it: validate, store, report runs."""

    def __init__(self) -> None:
        self.registered: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.unavailable = 0  # fail this many registrations as a database outage would

    async def register(self, spec: dict[str, Any]) -> None:
        if self.unavailable:
            self.unavailable -= 1
            raise ServiceUnavailable("database unavailable", retryable=True)
        WorkflowSpec.model_validate(spec)  # raises pydantic's ValidationError when invalid
        self.registered.append(spec)

    async def last_run(self, name: str) -> Mapping[str, Any] | None:
        return self.runs.get(name)


def make_watcher(
    api_client: client.ApiClient, registry: Registry, **kwargs: Any
) -> WorkflowResourceWatcher:
    options: dict[str, Any] = {
        "watch_timeout_s": 30,
        "status_interval_s": 3600,
        "retry_delay_s": 0.1,
        "clock": lambda: NOW,
    }
    options.update(kwargs)
    return WorkflowResourceWatcher(
        api_client, "ingest", registry.register, registry.last_run, **options
    )


def ready(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return None


async def test_listed_resource_is_registered_and_marked_ready(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake_api.apply(example("standard"))
    registry = Registry()
    watcher = make_watcher(api_client, registry)

    await watcher.resync()

    assert [spec["name"] for spec in registry.registered] == ["standard"]
    obj = fake_api.get("standard")
    assert ready(obj) == {
        "type": "Ready",
        "status": "True",
        "reason": "Registered",
        "message": "registered standard version 1",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-11-27T12:00:00Z",
    }
    assert obj["status"]["workflowName"] == "standard"
    assert obj["status"]["registeredVersion"] == 1
    patch = fake_api.status_patches("standard")[0]
    assert patch["content_type"] == "application/merge-patch+json"
    # The status write did not touch the spec the user owns.
    assert obj["spec"] == example("standard")["spec"]


async def test_invalid_definition_gets_a_condition_naming_the_field(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    resource = example("standard")
    resource["spec"]["definition"]["steps"][1]["depends_on"] = ["nowhere"]
    fake_api.apply(resource)
    registry = Registry()

    await make_watcher(api_client, registry).resync()

    assert registry.registered == []
    condition = ready(fake_api.get("standard"))
    assert condition is not None
    assert condition["status"] == "False"
    assert condition["reason"] == "InvalidSpec"
    assert "steps[1].depends_on[0]" in condition["message"]
    assert "nowhere" in condition["message"]
    assert "workflowName" not in fake_api.get("standard")["status"]


async def test_app_error_refusal_is_reported_with_its_message(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    fake_api.apply(example("test"))

    async def refuse(spec: dict[str, Any]) -> None:
        raise ValidationFailed("name: workflow 'test' version 1 exists with other steps")

    watcher = WorkflowResourceWatcher(
        api_client, "ingest", refuse, Registry().last_run, clock=lambda: NOW
    )
    await watcher.resync()

    condition = ready(fake_api.get("test"))
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert condition["message"] == "name: workflow 'test' version 1 exists with other steps"


async def test_watch_registers_new_and_edited_resources_but_not_status_echoes(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    registry = Registry()
    watcher = make_watcher(api_client, registry)
    await watcher.start()
    try:
        await eventually(lambda: fake_api.count("GET", watch=True) >= 1)
        resource = example("bulk_file")
        del resource["spec"]["definition"]["version"]  # version follows metadata.generation
        fake_api.apply(resource)
        await eventually(lambda: ready(fake_api.get("bulk-file")) is not None)
        assert [(s["name"], s["version"]) for s in registry.registered] == [("bulk_file", 1)]

        edited = copy.deepcopy(resource)
        edited["spec"]["definition"]["description"] = "edited"
        fake_api.apply(edited)
        await eventually(lambda: fake_api.get("bulk-file")["status"].get("registeredVersion") == 2)
        assert [(s["name"], s["version"]) for s in registry.registered] == [
            ("bulk_file", 1),
            ("bulk_file", 2),
        ]
        condition = ready(fake_api.get("bulk-file"))
        assert condition is not None
        assert condition["observedGeneration"] == 2
        assert condition["message"] == "registered bulk_file version 2"

        # Re-applying the same spec changes nothing: no registration, no status write.
        patches = len(fake_api.status_patches())
        fake_api.apply(edited)
        await asyncio.sleep(0.5)
        assert len(registry.registered) == 2
        assert len(fake_api.status_patches()) == patches
    finally:
        await watcher.stop()


async def test_failed_registration_is_retried_at_the_next_resync(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    registry = Registry()
    registry.unavailable = 1
    fake_api.apply(example("secure_api"))
    watcher = make_watcher(api_client, registry, resync_s=1)
    await watcher.start()
    try:
        await eventually(lambda: ready(fake_api.get("secure-api")) is not None)
        first = ready(fake_api.get("secure-api"))
        assert first is not None
        assert (first["status"], first["reason"]) == ("Unknown", "RegistrationFailed")
        assert "database unavailable" in first["message"]
        # The resync 1 s later retries it, and it succeeds.
        await eventually(lambda: (ready(fake_api.get("secure-api")) or {}).get("status") == "True")
        assert [s["name"] for s in registry.registered] == ["secure_api"]
    finally:
        await watcher.stop()


async def test_expired_watch_relists_and_keeps_going(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    registry = Registry()
    watcher = make_watcher(api_client, registry)
    await watcher.start()
    try:
        await eventually(lambda: fake_api.count("GET", watch=True) >= 1)
        lists_before = fake_api.count("GET", watch=False)
        # Changes made while the history is compacted: the watch gets 410 Gone.
        fake_api.apply(example("realtime_stream"))
        fake_api.expire_history()
        await eventually(lambda: fake_api.count("GET", watch=False) > lists_before)
        await eventually(lambda: ready(fake_api.get("realtime-stream")) is not None)
        assert "realtime_stream" in [s["name"] for s in registry.registered]
        # And it watches again afterwards.
        fake_api.apply(example("test"))
        await eventually(lambda: ready(fake_api.get("test")) is not None)
    finally:
        await watcher.stop()


async def test_sync_status_writes_the_last_run_once(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    registry = Registry()
    fake_api.apply(example("standard"))
    fake_api.apply(example("test"))
    watcher = make_watcher(api_client, registry)
    await watcher.resync()

    registry.runs["standard"] = {
        "run_id": "run-1",
        "status": "FAILED",
        "started_at": datetime(2026, 11, 27, 11, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 11, 27, 11, 5, tzinfo=UTC),
        "error": "step collect: connection refused",
    }
    assert await watcher.sync_status() == 1
    assert fake_api.get("standard")["status"]["lastRun"] == {
        "runId": "run-1",
        "status": "FAILED",
        "startedAt": "2026-11-27T11:00:00Z",
        "finishedAt": "2026-11-27T11:05:00Z",
        "message": "step collect: connection refused",
    }
    # Registration status is untouched by the run report.
    assert (ready(fake_api.get("standard")) or {}).get("status") == "True"
    assert "lastRun" not in fake_api.get("test")["status"]

    assert await watcher.sync_status() == 0  # unchanged: nothing written

    registry.runs["standard"] = {"run_id": "run-2", "status": "running"}
    assert await watcher.sync_status() == 1
    assert fake_api.get("standard")["status"]["lastRun"] == {"runId": "run-2", "status": "RUNNING"}


async def test_deleted_resource_is_forgotten(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    registry = Registry()
    registry.runs["standard"] = {"run_id": "run-1", "status": "SUCCEEDED"}
    fake_api.apply(example("standard"))
    watcher = make_watcher(api_client, registry)
    await watcher.start()
    try:
        await eventually(lambda: ready(fake_api.get("standard")) is not None)
        fake_api.delete("standard")
        await asyncio.sleep(0.5)
        patches = len(fake_api.status_patches())
        assert await watcher.sync_status() == 0
        assert len(fake_api.status_patches()) == patches
    finally:
        await watcher.stop()


async def test_stop_does_not_wait_for_the_watch_to_time_out(
    fake_api: FakeKubeApi, api_client: client.ApiClient
) -> None:
    watcher = make_watcher(api_client, Registry(), watch_timeout_s=300)
    await watcher.start()
    await eventually(lambda: fake_api.count("GET", watch=True) >= 1)
    started = time.monotonic()
    await watcher.stop()
    assert time.monotonic() - started < 3


async def test_requests_carry_the_service_account_token(
    fake_api: FakeKubeApi,
) -> None:
    configuration = client.Configuration(host=fake_api.url)  # no token
    watcher = WorkflowResourceWatcher(
        client.ApiClient(configuration), "ingest", Registry().register, Registry().last_run
    )
    with pytest.raises(client.ApiException) as info:
        await watcher.resync()
    assert info.value.status == 401
