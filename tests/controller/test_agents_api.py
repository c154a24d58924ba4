"""Registering other teams' agents through the controller's API (`POST/GET/DELETE /agents`):
in-process controller on a schema of its own, the agent a real HTTP server (tests/external_agent.py,
a plain FastAPI app, not agents/base) that the controller reads the actions of."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orchestrator_controller.agent_health.monitor import HealthMonitor
from services.orchestrator_controller.agents import service
from services.orchestrator_controller.agents.schemas import AgentIn
from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.metrics import create_metrics
from tests.conftest import SERVICE_TOKEN, asgi_client, fresh_schema, reads_with
from tests.external_agent import create_app as external_agent
from tests.serving import serve

ADMIN = {"Authorization": "Bearer k-admin"}
READER = {"Authorization": "Bearer k-reader"}
KEYS = ["k-admin", {"id": "reader", "key": "k-reader", "scopes": ["read"]}]


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = external_agent(str(tmp_path_factory.mktemp("agent") / "ledger.sqlite"), SERVICE_TOKEN)
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def not_an_agent() -> Iterator[str]:
    app = FastAPI()

    @app.get("/api/v1/actions")
    async def actions() -> dict[str, str]:
        return {"status": "ok"}  # JSON, 200, but no action list

    with serve(app) as url:
        yield url


@pytest.fixture
def schema() -> Iterator[str]:
    yield from fresh_schema()


def settings_for(common_env: dict, schema: str, **extra: Any) -> ControllerSettings:
    fields: dict[str, Any] = {
        **common_env,
        "db_schema": schema,
        "api_keys": KEYS,
        "engine_url": "http://127.0.0.1:9",
        "start_loops": False,
        "agent_allow_private_hosts": ["127.0.0.1"],
    }
    return ControllerSettings(**{**fields, **extra})


@pytest.fixture
async def api(common_env: dict, schema: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(common_env, schema))
    async with asgi_client(app, **reads_with("k-admin")) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def body(url: str, name: str = "data-quality", **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": url, **extra}


def quality_spec(name: str = "quality", action: str = "score") -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"id": "check", "agent": "data-quality", "action": action, "params": {"rows": 2}}
        ],
    }


async def registered(api: httpx.AsyncClient) -> list[str]:
    return [a["name"] for a in (await api.get("/agents")).json() if a["source"] != "builtin"]


async def test_an_agent_is_registered_with_the_actions_it_answers(
    api: httpx.AsyncClient, agent_url: str
) -> None:
    created = await api.post(
        "/agents", json=body(agent_url + "/", timeout_s=5, credentials=["Q_TOKEN"]), headers=ADMIN
    )
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["actions"] == ["score", "sleep"] and agent["source"] == "api"
    assert agent["base_url"] == agent_url  # the trailing slash gone
    assert (agent["timeout_s"], agent["max_concurrency"], agent["credentials"]) == (
        5,
        16,
        ["Q_TOKEN"],
    )

    listed = {a["name"]: a for a in (await api.get("/agents")).json()}
    assert listed["data-connector"]["source"] == "builtin"
    assert "test_connection" in listed["data-connector"]["actions"]
    assert listed["data-quality"]["source"] == "api"
    one = await api.get("/agents/data-quality")
    assert one.status_code == 200 and one.json()["actions"] == ["score", "sleep"]
    assert (await api.get("/agents/data-connector")).json()["source"] == "builtin"

    updated = await api.post("/agents", json=body(agent_url, max_concurrency=2), headers=ADMIN)
    assert updated.status_code == 200 and updated.json()["max_concurrency"] == 2
    assert updated.json()["created_at"] == agent["created_at"]


async def test_refusals_name_the_field_and_change_nothing(
    api: httpx.AsyncClient, agent_url: str, not_an_agent: str, common_env: dict, schema: str
) -> None:
    assert (await api.post("/agents", json=body(agent_url))).status_code == 401
    assert (await api.post("/agents", json=body(agent_url), headers=READER)).status_code == 403
    refused = [
        (body("http://127.0.0.1:9"), "connection"),  # nothing listens there
        (body(agent_url + "/elsewhere"), "HTTP 404"),
        (body(not_an_agent), "action list"),
        (body("http://169.254.169.254"), "link-local"),
        (body("ftp://example.com"), "http or https"),
        (body("http://user:pw@127.0.0.1:9"), "credentials"),
    ]
    for sent, complaint in refused:
        answer = await api.post("/agents", json=sent, headers=ADMIN)
        assert answer.status_code == 422, (sent, answer.text)
        assert answer.json()["message"].startswith("base_url: ") and complaint in answer.text
    for sent, field in [
        (body(agent_url, name="Data Quality"), "name"),
        (body(agent_url, timeout_s=0), "timeout_s"),
        (body(agent_url, credentials=["not a name"]), "credentials.0"),
        ({**body(agent_url), "surprise": 1}, "surprise"),
    ]:
        answer = await api.post("/agents", json=sent, headers=ADMIN)
        assert answer.status_code == 422 and field in answer.text, answer.text
    builtin = await api.post("/agents", json=body(agent_url, name="data-merger"), headers=ADMIN)
    assert builtin.status_code == 409 and builtin.json()["error"] == "builtin_agent"
    reserved = await api.post("/agents", json=body(agent_url, name="health"), headers=ADMIN)
    assert reserved.status_code == 409
    assert await registered(api) == []
    assert (await api.get("/agents/data-quality")).status_code == 404

    # A private address the allowlist does not name: the message says which setting opens it.
    closed = create_app(settings_for(common_env, schema, agent_allow_private_hosts=[]))
    async with asgi_client(closed) as other:
        answer = await other.post("/agents", json=body(agent_url), headers=ADMIN)
    assert answer.status_code == 422 and "CONTROLLER_AGENT_ALLOW_PRIVATE_HOSTS" in answer.text


async def test_specs_may_name_registered_agents_and_their_actions_only(
    api: httpx.AsyncClient, agent_url: str
) -> None:
    before = await api.post("/coordinate", json={"spec": quality_spec()}, headers=ADMIN)
    assert before.status_code == 422 and "spec.steps[0].agent" in before.text
    assert (await api.post("/agents", json=body(agent_url), headers=ADMIN)).status_code == 201

    run = await api.post("/coordinate", json={"spec": quality_spec()}, headers=ADMIN)
    assert run.status_code == 202, run.text
    wrong = await api.post(
        "/coordinate", json={"spec": quality_spec(action="teleport")}, headers=ADMIN
    )
    assert wrong.status_code == 422 and "spec.steps[0].action" in wrong.text
    assert "score" in wrong.json()["message"]
    definition = await api.post("/workflows/definitions", json=quality_spec(), headers=ADMIN)
    assert definition.status_code == 201, definition.text
    bad = await api.post(
        "/workflows/definitions", json=quality_spec("q2", "teleport"), headers=ADMIN
    )
    assert bad.status_code == 422 and "steps[0].action" in bad.text


async def test_an_agent_in_use_is_not_unregistered(api: httpx.AsyncClient, agent_url: str) -> None:
    assert (await api.post("/agents", json=body(agent_url), headers=ADMIN)).status_code == 201
    assert (await api.post("/workflows/definitions", json=quality_spec(), headers=ADMIN)).is_success
    schedule = {"name": "nightly-quality", "workflow": "quality", "interval_s": 3600}
    assert (await api.post("/schedules", json=schedule, headers=ADMIN)).is_success

    assert (await api.delete("/agents/data-quality", headers=READER)).status_code == 403
    busy = await api.delete("/agents/data-quality", headers=ADMIN)
    assert busy.status_code == 409 and busy.json()["error"] == "agent_in_use"
    assert "quality v1" in busy.text and "nightly-quality" in busy.text
    assert await registered(api) == ["data-quality"]

    assert (await api.delete("/schedules/nightly-quality", headers=ADMIN)).is_success
    assert (await api.delete("/workflows/definitions/quality", headers=ADMIN)).is_success
    assert (await api.delete("/agents/data-quality", headers=ADMIN)).status_code == 204
    assert (await api.get("/agents/data-quality")).status_code == 404
    assert (await api.delete("/agents/data-quality", headers=ADMIN)).status_code == 404
    builtin = await api.delete("/agents/data-connector", headers=ADMIN)
    assert builtin.status_code == 409 and builtin.json()["error"] == "builtin_agent"


async def test_an_agent_of_a_resource_is_changed_only_there(
    api: httpx.AsyncClient, agent_url: str
) -> None:
    async with api.app.state.sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
        await service.store(
            session,
            AgentIn(name="data-quality", base_url=agent_url),
            base_url=agent_url,
            actions=["score"],
            source="kubernetes",
            resource="ingest/data-quality",
        )
    for answer in (
        await api.post("/agents", json=body(agent_url), headers=ADMIN),
        await api.delete("/agents/data-quality", headers=ADMIN),
    ):
        assert answer.status_code == 409 and answer.json()["error"] == "registered_by_resource"
        assert "ingest/data-quality" in answer.text
    assert (await api.get("/agents/data-quality")).json()["source"] == "kubernetes"


async def test_the_health_monitor_polls_registered_agents(
    api: httpx.AsyncClient, agent_url: str, tmp_path: Path
) -> None:
    assert (await api.post("/agents", json=body(agent_url), headers=ADMIN)).status_code == 201
    shown = {a["agent"]: a for a in (await api.get("/agents/health")).json()["agents"]}
    assert shown["data-quality"]["status"] == "unknown"
    assert shown["data-quality"]["url"] == agent_url
    app = api.app  # type: ignore[attr-defined]
    monitor = HealthMonitor(
        app.state.settings, app.state.sessionmaker, app.state.http, create_metrics()
    )
    await monitor.check_all()
    shown = {a["agent"]: a for a in (await api.get("/agents/health")).json()["agents"]}
    assert shown["data-quality"]["status"] == "healthy"
    assert (await api.get("/agents/data-quality")).json()["health"] == "healthy"
    history = await api.get("/agents/health/history", params={"agent": "data-quality"})
    assert history.status_code == 200
