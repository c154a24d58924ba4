"""The controller's API in-process, on a real PostgreSQL schema (loops off: no engine here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.models import WorkflowRun
from tests.conftest import asgi_client, reads_with

KEY = {"Authorization": "Bearer k-123"}


def inline_spec(name: str = "inline", **step_extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"n": {"type": "integer", "required": True}},
        "steps": [
            {
                "id": "a",
                "agent": "data-connector",
                "action": "noop",
                "params": {"n": "${inputs.n}"},
            },
            {
                "id": "b",
                "agent": "data-merger",
                "action": "noop",
                "depends_on": ["a"],
                **step_extra,
            },
        ],
    }


@pytest.fixture
async def api(module_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    settings = ControllerSettings(
        **module_env,
        api_keys=["k-123"],
        engine_url="http://127.0.0.1:9",  # nothing listens: hand-off fails, runs stay PENDING
        start_loops=False,
    )
    app = create_app(settings)
    async with asgi_client(app, **reads_with("k-123")) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def count_runs(api: httpx.AsyncClient) -> int:
    async with api.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return (await session.execute(select(func.count()).select_from(WorkflowRun))).scalar_one()


async def test_coordinate_requires_an_api_key_and_changes_nothing(api: httpx.AsyncClient) -> None:
    before = await count_runs(api)
    body = {"spec": inline_spec(), "inputs": {"n": 1}}
    assert (await api.post("/coordinate", json=body)).status_code == 401
    wrong = await api.post("/coordinate", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert await count_runs(api) == before


async def test_coordinate_accepts_and_reports_a_pending_run(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/coordinate", json={"spec": inline_spec(), "inputs": {"n": 7}}, headers=KEY
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "PENDING" and body["status_url"] == f"/workflows/{body['run_id']}"
    detail = (await api.get(body["status_url"])).json()
    assert detail["status"] == "PENDING" and detail["inputs"] == {"n": 7}
    assert detail["workflow"] == "inline" and detail["steps"] == []


async def test_same_idempotency_key_returns_the_same_run(api: httpx.AsyncClient) -> None:
    key = {**KEY, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"spec": inline_spec(), "inputs": {"n": 1}}
    first = await api.post("/coordinate", json=body, headers=key)
    before = await count_runs(api)
    second = await api.post("/coordinate", json=body, headers=key)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["run_id"] == second.json()["run_id"]
    assert await count_runs(api) == before
    other = await api.post("/coordinate", json={**body, "inputs": {"n": 2}}, headers=key)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert await count_runs(api) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"spec": inline_spec(), "inputs": {}}, "inputs.n"),
        ({"spec": inline_spec(), "inputs": {"n": "seven"}}, "inputs.n"),
        ({"spec": inline_spec(), "inputs": {"n": 1, "m": 2}}, "inputs.m"),
        ({"workflow": "no-such-workflow"}, "workflow"),
        ({"spec": inline_spec(depends_on=["zz"]), "inputs": {"n": 1}}, "steps[1].depends_on[0]"),
        ({"spec": inline_spec(agent="data-nothing"), "inputs": {"n": 1}}, "steps[1].agent"),
        ({"inputs": {}}, "workflow"),
        ({"workflow": "test", "surprise": 1}, "surprise"),
    ],
)
async def test_bad_requests_get_422_naming_the_field(
    api: httpx.AsyncClient, body: dict, field: str
) -> None:
    before = await count_runs(api)
    response = await api.post("/coordinate", json=body, headers=KEY)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert await count_runs(api) == before


async def test_unknown_run_ids_are_404(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"/workflows/{uuid.uuid4()}")).status_code == 404
    assert (await api.get("/workflows/not-a-uuid")).status_code == 404
    missing = await api.post(f"/workflows/{uuid.uuid4()}/cancel", headers=KEY)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_cancel_a_pending_run_then_409(api: httpx.AsyncClient) -> None:
    run_id = (
        await api.post("/coordinate", json={"spec": inline_spec(), "inputs": {"n": 1}}, headers=KEY)
    ).json()["run_id"]
    assert (await api.post(f"/workflows/{run_id}/cancel")).status_code == 401
    cancelled = await api.post(f"/workflows/{run_id}/cancel", headers=KEY)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"
    again = await api.post(f"/workflows/{run_id}/cancel", headers=KEY)
    assert again.status_code == 409


async def test_status_lists_filters_and_paginates(api: httpx.AsyncClient) -> None:
    name = f"listing-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        await api.post(
            "/coordinate", json={"spec": inline_spec(name), "inputs": {"n": n}}, headers=KEY
        )
    page = (await api.get("/workflows/status", params={"workflow": name, "limit": 2})).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = (
        await api.get("/workflows/status", params={"workflow": name, "limit": 2, "offset": 2})
    ).json()
    assert len(rest["items"]) == 1
    pending = (
        await api.get("/workflows/status", params={"workflow": name, "status": "PENDING"})
    ).json()
    assert pending["total"] == 3
    bad = await api.get("/workflows/status", params={"status": "SLEEPING"})
    assert bad.status_code == 422 and "status" in bad.text


async def test_definitions_register_idempotently_and_refuse_changes(
    api: httpx.AsyncClient,
) -> None:
    spec = inline_spec(f"def-{uuid.uuid4().hex[:6]}")
    assert (await api.post("/workflows/definitions", json=spec)).status_code == 401
    assert (await api.post("/workflows/definitions", json=spec, headers=KEY)).status_code == 201
    assert (await api.post("/workflows/definitions", json=spec, headers=KEY)).status_code == 200
    changed = {**spec, "description": "changed"}
    conflict = await api.post("/workflows/definitions", json=changed, headers=KEY)
    assert conflict.status_code == 409
    listed = (await api.get("/workflows/definitions", params={"name": spec["name"]})).json()
    assert [d["version"] for d in listed["items"]] == [1]
    run = await api.post(
        "/coordinate", json={"workflow": spec["name"], "inputs": {"n": 1}}, headers=KEY
    )
    assert run.status_code == 202 and run.json()["version"] == 1


async def test_builtin_test_workflow_is_registered(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/workflows/definitions", params={"name": "test"})).json()
    assert listed["items"] and listed["items"][0]["kind"] == "test"


async def test_an_unreachable_database_is_a_503_to_retry(common_env: dict) -> None:
    settings = ControllerSettings(
        **{**common_env, "database_url": "postgresql+asyncpg://postgres@127.0.0.1:9/none"},
        api_keys=["k-123"],
        start_loops=False,
        register_builtin_workflows=False,
        seed_schedules=False,
    )
    async with asgi_client(create_app(settings), **reads_with("k-123")) as client:
        response = await client.post(
            "/coordinate", json={"spec": inline_spec(), "inputs": {"n": 1}}, headers=KEY
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable"
        assert response.json()["retryable"] is True
        assert (await client.get("/workflows/status")).status_code == 503


async def test_a_definition_can_be_sent_as_yaml(api: httpx.AsyncClient) -> None:
    yaml_spec = "name: from-yaml\nsteps:\n  - {id: a, agent: data-connector, action: noop}\n"
    headers = {**KEY, "Content-Type": "application/yaml"}
    made = await api.post("/workflows/definitions", content=yaml_spec, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "from-yaml"
    broken = await api.post("/workflows/definitions", content="name: [unclosed", headers=headers)
    assert broken.status_code == 422 and "not YAML" in broken.text
    no_steps = await api.post("/workflows/definitions", content="name: x\n", headers=headers)
    assert no_steps.status_code == 422 and "steps" in no_steps.text
    listed = (await api.get("/workflows/definitions", params={"name": "x"})).json()["items"]
    assert listed == []  # nothing stored by the refused ones
