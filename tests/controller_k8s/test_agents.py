"""Agent resources register other teams' agents: the Agent kind's informer against the fake
Kubernetes API (see fake_kube_api.py), the registrations in a real PostgreSQL schema, the agent
a real HTTP server (tests/external_agent.py, not on agents/base) whose actions are read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.agents import service
from services.orchestrator_controller.agents.schemas import AgentIn
from services.orchestrator_controller.kubernetes.agents import AgentResources
from services.orchestrator_controller.kubernetes.informer import Informer
from tests.conftest import SERVICE_TOKEN
from tests.deploy.conftest import CHART
from tests.deploy.crd_schema import CrdValidator
from tests.external_agent import create_app as external_agent
from tests.serving import serve

from .fake_kube_api import FakeKubeApi
from .helpers import NAMESPACE

pytestmark = pytest.mark.timeout(120)
PLURAL = "agents"


def agent_resource(name: str, agent: str, base_url: str | None = None, **spec: Any) -> Any:
    body: dict[str, Any] = {"agentName": agent, **spec}
    if base_url is not None:
        body["baseUrl"] = base_url
    return {
        "apiVersion": "ingestion.platform.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": body,
    }


@pytest.fixture
async def sync(api_client: client.ApiClient, db: async_sessionmaker) -> AsyncIterator[Informer]:
    async with httpx.AsyncClient() as http:
        agents = AgentResources(
            db, http, token=SERVICE_TOKEN, allow_private_hosts=["127.0.0.1"], probe_timeout_s=2
        )
        yield Informer(api_client, NAMESPACE, agents)


def registered_by(sync: Informer) -> dict[str, str]:
    """Each agent the kind registered and the resource registering it."""
    assert isinstance(sync.kind, AgentResources)
    return sync.kind.registrations


async def registrations(db: async_sessionmaker) -> dict[str, tuple[Any, ...]]:
    async with db() as session:
        rows = await session.execute(
            text(
                "SELECT name, base_url, actions, timeout_s, max_concurrency, credentials, source, "
                "resource FROM registered_agents"
            )
        )
        return {r.name: tuple(r)[1:] for r in rows}


def ready(resource: dict[str, Any]) -> tuple[str, str, str]:
    status = resource["status"]
    [condition] = [c for c in status["conditions"] if c["type"] == "Ready"]
    return status["phase"], condition["status"], condition["reason"]


async def test_agent_resources_register_agents_and_report_in_their_status(
    fake_api: FakeKubeApi, sync: Informer, db: async_sessionmaker, agent_url: str
) -> None:
    fake = fake_api
    fake.apply(
        agent_resource(
            "quality", "data-quality", agent_url, timeoutSeconds=30, credentials=["Q_TOKEN"]
        ),
        NAMESPACE,
    )
    fake.apply(agent_resource("quality-too", "data-quality", agent_url), NAMESPACE)
    fake.apply(agent_resource("connector", "data-connector"), NAMESPACE)
    fake.apply(agent_resource("connector-url", "data-connector", agent_url), NAMESPACE)
    fake.apply(agent_resource("typo", "Data_Quality", agent_url), NAMESPACE)
    fake.apply(agent_resource("no-url", "pii-classifier"), NAMESPACE)
    fake.apply(agent_resource("nowhere", "storage", "http://127.0.0.1:9"), NAMESPACE)
    fake.apply(agent_resource("metadata", "features", "http://169.254.169.254"), NAMESPACE)

    await sync.resync()
    assert registered_by(sync) == {"data-quality": f"{NAMESPACE}/quality"}
    assert await registrations(db) == {
        "data-quality": (
            agent_url,
            ["score", "sleep"],
            30.0,
            16,
            ["Q_TOKEN"],
            "kubernetes",
            f"{NAMESPACE}/quality",
        )
    }
    quality = fake.get("quality", NAMESPACE)
    assert ready(quality) == ("Registered", "True", "Registered")
    assert quality["status"]["actions"] == ["score", "sleep"]
    assert ready(fake.get("quality-too", NAMESPACE)) == ("Failed", "False", "Conflict")
    assert ready(fake.get("connector", NAMESPACE)) == ("BuiltIn", "True", "BuiltIn")
    assert ready(fake.get("connector-url", NAMESPACE)) == ("Failed", "False", "Conflict")
    for name, reason, says in [
        ("typo", "InvalidSpec", "spec.agentName"),
        ("no-url", "InvalidSpec", "spec.baseUrl"),
        ("nowhere", "Unreachable", "127.0.0.1:9"),
        ("metadata", "InvalidSpec", "link-local"),
    ]:
        resource = fake.get(name, NAMESPACE)
        assert ready(resource) == ("Failed", "False", reason), name
        assert says in resource["status"]["conditions"][0]["message"], name
    # What the sync writes is what the CRD allows.
    crd = yaml.safe_load((CHART / "crds" / "agents.ingestion.platform.io.yaml").read_text())
    validator = CrdValidator(crd)
    try:
        for name in ("quality", "connector", "nowhere"):
            assert validator.errors(fake.get(name, NAMESPACE)) is None, name
    finally:
        validator.close()

    # Nothing changed: nothing is written again.
    patches = len(fake.status_patches())
    await sync.resync()
    assert len(fake.status_patches()) == patches

    # Edited, then deleted: the registration follows, then it is gone.
    fake.apply(agent_resource("quality", "data-quality", agent_url, maxConcurrency=3), NAMESPACE)
    await sync.resync()
    assert (await registrations(db))["data-quality"][2:4] == (60.0, 3)
    fake.delete("quality", NAMESPACE)
    fake.delete("quality-too", NAMESPACE)
    await sync.resync()
    assert await registrations(db) == {}


async def test_a_resource_takes_an_api_registration_over_and_an_agent_away_keeps_it(
    fake_api: FakeKubeApi,
    sync: Informer,
    db: async_sessionmaker,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fake = fake_api
    app = external_agent(str(tmp_path_factory.mktemp("away") / "ledger.sqlite"), SERVICE_TOKEN)
    with serve(app) as url:
        async with db() as session, session.begin():
            await service.store(
                session,
                AgentIn(name="storage", base_url=url),
                base_url=url,
                actions=["score"],
                source="api",
            )
        fake.apply(agent_resource("storage", "storage", url), NAMESPACE)
        await sync.resync()
        assert (await registrations(db))["storage"][1:] == (
            ["score", "sleep"],
            60.0,
            16,
            [],
            "kubernetes",
            f"{NAMESPACE}/storage",
        )
    # The agent stopped: its registration stands (runs retry it) and the status says why.
    await sync.resync()
    assert (await registrations(db))["storage"][1] == ["score", "sleep"]
    storage = fake.get("storage", NAMESPACE)
    assert ready(storage) == ("Registered", "False", "Unreachable")
    assert "stands" in storage["status"]["conditions"][0]["message"]
