"""Agent resources register other teams' agents: the controller's sync against the fake
Kubernetes API (see fake_kube_api.py), the registrations in a real PostgreSQL schema, the agent
a real HTTP server (tests/external_agent.py, not on agents/base) whose actions are read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.agents import service
from services.orchestrator_controller.agents.schemas import AgentIn
from services.orchestrator_controller.kubernetes.agents import AgentResourceSync
from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, SERVICE_TOKEN, fresh_schema
from tests.deploy.conftest import CHART
from tests.deploy.crd_schema import CrdValidator
from tests.external_agent import create_app as external_agent
from tests.serving import serve

from .fake_kube_api import FakeKubeApi

pytestmark = pytest.mark.timeout(120)
NAMESPACE = "ingest"


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
def agents_api() -> Iterator[tuple[FakeKubeApi, client.ApiClient]]:
    fake = FakeKubeApi(token="test-token", plural="agents")
    fake.start()
    configuration = client.Configuration(host=fake.url)
    configuration.api_key = {"BearerToken": "test-token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api_client = client.ApiClient(configuration)
    yield fake, api_client
    api_client.close()
    fake.stop()


@pytest.fixture
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = external_agent(str(tmp_path_factory.mktemp("agent") / "ledger.sqlite"), SERVICE_TOKEN)
    with serve(app) as url:
        yield url


@pytest.fixture
def schema() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture
async def db(schema: str) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def sync(
    agents_api: tuple[FakeKubeApi, client.ApiClient], db: async_sessionmaker
) -> AsyncIterator[AgentResourceSync]:
    async with httpx.AsyncClient() as http:
        yield AgentResourceSync(
            agents_api[1],
            NAMESPACE,
            db,
            http,
            token=SERVICE_TOKEN,
            allow_private_hosts=["127.0.0.1"],
            probe_timeout_s=2,
        )


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
    agents_api: tuple[FakeKubeApi, client.ApiClient],
    sync: AgentResourceSync,
    db: async_sessionmaker,
    agent_url: str,
) -> None:
    fake, _ = agents_api
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

    assert await sync.sync_once() == {"data-quality": f"{NAMESPACE}/quality"}
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
    await sync.sync_once()
    assert len(fake.status_patches()) == patches

    # Edited, then deleted: the registration follows, then it is gone.
    fake.apply(agent_resource("quality", "data-quality", agent_url, maxConcurrency=3), NAMESPACE)
    await sync.sync_once()
    assert (await registrations(db))["data-quality"][2:4] == (60.0, 3)
    fake.delete("quality", NAMESPACE)
    fake.delete("quality-too", NAMESPACE)
    await sync.sync_once()
    assert await registrations(db) == {}


async def test_a_resource_takes_an_api_registration_over_and_an_agent_away_keeps_it(
    agents_api: tuple[FakeKubeApi, client.ApiClient],
    sync: AgentResourceSync,
    db: async_sessionmaker,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fake, _ = agents_api
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
        await sync.sync_once()
        assert (await registrations(db))["storage"][1:] == (
            ["score", "sleep"],
            60.0,
            16,
            [],
            "kubernetes",
            f"{NAMESPACE}/storage",
        )
    # The agent stopped: its registration stands (runs retry it) and the status says why.
    await sync.sync_once()
    assert (await registrations(db))["storage"][1] == ["score", "sleep"]
    storage = fake.get("storage", NAMESPACE)
    assert ready(storage) == ("Registered", "False", "Unreachable")
    assert "stands" in storage["status"]["conditions"][0]["message"]
