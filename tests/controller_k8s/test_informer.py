"""One informer per kind, as the controller builds them (kubernetes/bridge.py), against the fake
Kubernetes API (fake_kube_api.py; no API server can run here) with real PostgreSQL, a real
external agent over HTTP, and the controller's real policies and live settings.

Every resync period is an hour, so nothing here can be the work of a periodic re-list: an
edit or a delete that takes effect within seconds came through the watch, and a re-list is
counted (`fake.count`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.kubernetes import bridge
from services.orchestrator_controller.kubernetes.informer import Informer
from services.orchestrator_controller.kubernetes.orchestrators import OrchestratorResources
from services.orchestrator_controller.kubernetes.watcher import WorkflowResourceWatcher
from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.settings import ControllerSettings
from tests.polling import eventually

from .fake_kube_api import PLURALS, FakeKubeApi
from .helpers import NAMESPACE, condition, running
from .test_watcher import example

pytestmark = pytest.mark.timeout(120)
HOUR = 3600.0
API_VERSION = "ingestion.platform.io/v1alpha1"
# The resource of each kind the first test creates, edits and deletes.
CREATED = [
    ("standard", "workflows"),
    ("rs", "models"),
    ("quality", "agents"),
    ("batch", "orchestrators"),
    ("platform", "configs"),
]


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


@dataclass
class Five:
    """The five informers and what each puts in force."""

    settings: ControllerSettings
    policies: Policies
    db: async_sessionmaker
    workflows: WorkflowResourceWatcher
    informers: list[Informer]

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        async with self.db() as session:
            return [tuple(r) for r in await session.execute(text(sql))]


@pytest.fixture
async def five(
    common_env: dict, schema: str, db: async_sessionmaker, api_client: client.ApiClient
) -> AsyncIterator[Five]:
    settings = ControllerSettings(
        **{**common_env, "db_schema": schema},
        kubernetes_namespace=NAMESPACE,
        model_resync_s=HOUR,
        agent_resync_s=HOUR,
        orchestrator_resync_s=HOUR,
        config_resync_s=HOUR,
        agent_allow_private_hosts=["127.0.0.1"],
    )
    policies = Policies(settings.orchestrators)
    async with httpx.AsyncClient() as http:
        workflows = bridge.build_watcher(settings, db, api_client, resync_s=HOUR)
        informers = [
            workflows,
            bridge.build_model_sync(settings, db, api_client),
            bridge.build_agent_sync(settings, db, http, api_client),
            bridge.build_orchestrator_sync(settings, policies, api_client),
            bridge.build_config_sync(settings, api_client),
        ]
        assert {i.resync_s for i in informers} == {HOUR}
        async with running(*informers):
            yield Five(settings, policies, db, workflows, informers)


async def watching(fake: FakeKubeApi) -> None:
    """Until each of the five kinds has been listed once and is being watched."""
    await eventually(lambda: all(fake.count("GET", watch=True, plural=p) for p in PLURALS.values()))


def lists(fake: FakeKubeApi) -> dict[str, int]:
    return {p: fake.count("GET", watch=False, plural=p) for p in PLURALS.values()}


def registered_standard(five: Five, version: int) -> Any:
    async def check() -> bool:
        rows = await five.rows("SELECT name, version FROM workflow_definitions")
        return ("standard", version) in rows

    return check


async def test_all_five_kinds_follow_creates_edits_and_deletes_through_their_watches(
    fake_api: FakeKubeApi, five: Five, agent_url: str
) -> None:
    fake = fake_api
    await watching(fake)
    assert set(lists(fake).values()) == {1}
    standard = example("standard")
    del standard["spec"]["definition"]["version"]  # its version follows metadata.generation
    started = time.monotonic()

    # Created.
    fake.apply(standard, NAMESPACE)
    fake.apply(
        resource("Model", "rs", {"model": "retry_strategy", "registeredModelName": "retry_a"}),
        NAMESPACE,
    )
    fake.apply(resource("Agent", "quality", {"agentName": "quality", "baseUrl": agent_url}))
    fake.apply(resource("Orchestrator", "batch", {"type": "batch", "maxConcurrentRuns": 7}))
    fake.apply(resource("Config", "platform", {"maxSpecBytes": 4096}), NAMESPACE)
    await eventually(registered_standard(five, 1))
    await eventually(lambda: five.policies.config.batch_manager.max_concurrent_runs == 7)
    await eventually(lambda: five.settings.live.current.max_spec_bytes == 4096)

    async def bound(alias: str | None) -> bool:
        rows = await five.rows("SELECT registered_model FROM model_bindings")
        return rows == ([] if alias is None else [(alias,)])

    async def registered(actions: list[str] | None) -> bool:
        rows = await five.rows("SELECT actions FROM registered_agents WHERE name = 'quality'")
        return rows == ([] if actions is None else [(actions,)])

    await eventually(lambda: bound("retry_a"))
    await eventually(lambda: registered(["score", "sleep"]))
    for name, plural in CREATED:
        await eventually(lambda n=name, p=plural: bool(fake.get(n, NAMESPACE, p).get("status")))  # type: ignore[misc]
        assert condition(fake.get(name, NAMESPACE, plural))["status"] == "True", plural

    # Edited.
    standard["spec"]["definition"]["description"] = "edited"
    fake.apply(standard, NAMESPACE)
    fake.apply(
        resource("Model", "rs", {"model": "retry_strategy", "registeredModelName": "retry_b"}),
        NAMESPACE,
    )
    fake.apply(resource("Orchestrator", "batch", {"type": "batch", "maxConcurrentRuns": 9}))
    fake.apply(resource("Config", "platform", {"maxSpecBytes": 8192}), NAMESPACE)
    await eventually(registered_standard(five, 2))
    await eventually(lambda: bound("retry_b"))
    await eventually(lambda: five.policies.config.batch_manager.max_concurrent_runs == 9)
    await eventually(lambda: five.settings.live.current.max_spec_bytes == 8192)

    # Deleted: each is reconciled away.
    for name, plural in CREATED:
        fake.delete(name, NAMESPACE, plural)
    await eventually(lambda: bound(None))
    await eventually(lambda: registered(None))
    await eventually(lambda: five.policies.config.batch_manager.max_concurrent_runs == 500)
    await eventually(lambda: five.settings.live.current.max_spec_bytes == 256 * 1024)
    await eventually(lambda: "standard" not in five.workflows.workflows.tracked)
    # The definition stays registered (runs may reference it); nothing more is reported.
    assert await registered_standard(five, 2)()

    # Not one of these came from a re-list: each kind was listed once, at the start.
    assert lists(fake) == dict.fromkeys(PLURALS.values(), 1)
    assert time.monotonic() - started < HOUR


async def test_a_410_gone_relists_every_kind_and_what_changed_meanwhile_is_reconciled(
    fake_api: FakeKubeApi, five: Five, agent_url: str
) -> None:
    fake = fake_api
    await watching(fake)
    watches = {p: fake.count("GET", watch=True, plural=p) for p in PLURALS.values()}
    # The history the watches resume from is compacted: each gets 410 Gone, and re-lists.
    fake.expire_history()
    fake.apply(example("test"), NAMESPACE)
    fake.apply(
        resource("Model", "sd", {"model": "source_detection", "registeredModelName": "sd_x"}),
        NAMESPACE,
    )
    fake.apply(resource("Agent", "features", {"agentName": "features", "baseUrl": agent_url}))
    fake.apply(resource("Orchestrator", "files", {"type": "file", "maxFanout": 3}), NAMESPACE)
    fake.apply(resource("Config", "platform", {"maxNestingDepth": 5}), NAMESPACE)

    await eventually(lambda: all(n >= 2 for n in lists(fake).values()), within_s=20)
    await eventually(lambda: five.policies.config.file_manager.max_fanout == 3)
    await eventually(lambda: five.settings.live.current.max_nesting_depth == 5)

    async def reconciled() -> bool:
        agents = await five.rows("SELECT name FROM registered_agents")
        models = await five.rows("SELECT model FROM model_bindings")
        tests = await five.rows("SELECT name FROM workflow_definitions WHERE name = 'test'")
        return agents == [("features",)] and models == [("source_detection",)] and bool(tests)

    await eventually(reconciled)
    # And each watches again afterwards.
    await eventually(
        lambda: all(fake.count("GET", watch=True, plural=p) > watches[p] for p in watches)
    )
    fake.apply(resource("Orchestrator", "files", {"type": "file", "maxFanout": 4}), NAMESPACE)
    await eventually(lambda: five.policies.config.file_manager.max_fanout == 4)


async def test_api_errors_are_retried_with_a_growing_delay_and_then_it_lists_again(
    fake_api: FakeKubeApi, api_client: client.ApiClient, common_env: dict
) -> None:
    fake = fake_api
    settings = ControllerSettings(**common_env, kubernetes_namespace=NAMESPACE)
    policies = Policies(settings.orchestrators)
    informer = Informer(
        api_client,
        NAMESPACE,
        OrchestratorResources(policies, settings.orchestrators),
        resync_s=HOUR,
        backoff_s=0.2,
        max_backoff_s=1.0,
    )
    fake.refuse_reads.add("orchestrators")
    fake.apply(resource("Orchestrator", "streams", {"type": "stream", "maxConcurrentRuns": 2}))
    async with running(informer):
        await eventually(lambda: fake.count("GET", plural="orchestrators") >= 5, within_s=20)
        attempts = [r["at"] for r in list(fake.requests) if r.get("plural") == "orchestrators"]
        gaps = [b - a for a, b in itertools.pairwise(attempts[:5])]
        # 0.2 s, then 0.4 s, 0.8 s, capped at 1 s (each up to half as long again): not a
        # fixed retry period, and never a busy loop.
        assert gaps[0] < 0.5 and gaps[2] > 0.75 and gaps[3] > 0.95, gaps
        assert all(b >= a * 0.9 for a, b in itertools.pairwise(gaps[:3])), gaps
        assert policies.config.stream_manager.max_concurrent_runs != 2

        fake.refuse_reads.clear()
        await eventually(lambda: policies.config.stream_manager.max_concurrent_runs == 2)
        await eventually(lambda: fake.count("GET", watch=True, plural="orchestrators") >= 1)


async def test_a_watch_refused_after_a_good_list_backs_off_too(
    fake_api: FakeKubeApi, api_client: client.ApiClient, common_env: dict
) -> None:
    settings = ControllerSettings(**common_env, kubernetes_namespace=NAMESPACE)
    policies = Policies(settings.orchestrators)
    kind = OrchestratorResources(policies, settings.orchestrators)
    informer = Informer(api_client, NAMESPACE, kind, resync_s=HOUR, backoff_s=0.2)
    fake_api.refuse_watches.add("orchestrators")
    fake_api.apply(resource("Orchestrator", "streams", {"type": "stream", "maxConcurrentRuns": 2}))
    async with running(informer):
        # Each list succeeds (the resource applies), each watch is refused: the lists that
        # follow come at growing intervals, not at once.
        await eventually(lambda: policies.config.stream_manager.max_concurrent_runs == 2)
        await eventually(lambda: fake_api.count("GET", watch=False, plural="orchestrators") >= 4)
        lists = [
            r["at"]
            for r in list(fake_api.requests)
            if r.get("plural") == "orchestrators" and r.get("watch") is False
        ]
        gaps = [b - a for a, b in itertools.pairwise(lists[:4])]
        assert gaps[0] >= 0.2 and gaps[2] > 0.75, gaps
