"""GET/DELETE /sources/{key}/state: a user inspects and resets the cursor a workflow committed.

The state is written as the collector writes it (its state module, on the session schema); the
controller runs in-process with its loops off.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from agents.data_collector.state import save_state
from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from tests.conftest import asgi_client

ADMIN = {"Authorization": "Bearer k-src-admin"}
READER = {"Authorization": "Bearer k-src-reader"}
CURSOR = {
    "field": "updated_at",
    "value": "2026-01-01T00:30:00Z",
    "lag": 0.0,
    "seen": ["a1b2c3", "d4e5f6"],
    "updated_at": "2026-01-01T01:00:00Z",
}


@pytest.fixture
async def api(common_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    settings = ControllerSettings(
        **common_env,
        api_keys=["k-src-admin", {"id": "reader", "key": "k-src-reader", "scopes": ["read"]}],
        engine_url="http://127.0.0.1:9",
        start_loops=False,
    )
    app = create_app(settings)
    async with asgi_client(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def commit(api: httpx.AsyncClient, key: str, run_id: str) -> None:
    async with api.app.state.sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
        await save_state(session, key=key, cursor=CURSOR, run_id=run_id)


async def test_a_user_reads_and_resets_a_sources_state(api: httpx.AsyncClient) -> None:
    key = f"crm/orders-{uuid.uuid4().hex[:6]}@eu:1"  # slashes and the other allowed marks
    await commit(api, key, "run-7")
    shown = await api.get(f"/sources/{key}/state", headers=READER)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["key"], body["cursor"], body["run_id"]) == (key, CURSOR, "run-7")
    assert body["updated_at"]

    assert (await api.delete(f"/sources/{key}/state", headers=ADMIN)).status_code == 204
    gone = await api.get(f"/sources/{key}/state", headers=READER)
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_source"
    again = await api.delete(f"/sources/{key}/state", headers=ADMIN)
    assert again.status_code == 404 and again.json()["retryable"] is False


async def test_keys_scopes_and_names_are_checked(api: httpx.AsyncClient) -> None:
    key = f"orders-{uuid.uuid4().hex[:6]}"
    await commit(api, key, "run-1")
    path = f"/sources/{key}/state"
    assert (await api.get(path)).status_code == 401
    assert (await api.delete(path)).status_code == 401
    assert (await api.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
    refused = await api.delete(path, headers=READER)  # reading is not resetting
    assert refused.status_code == 403 and refused.json()["error"] == "missing_scope"
    assert (await api.get(path, headers=READER)).status_code == 200  # still there
    unknown = await api.get(f"/sources/never-{uuid.uuid4().hex[:6]}/state", headers=READER)
    assert unknown.status_code == 404 and "no state stored" in unknown.json()["message"]
    for bad in ("-leading-dash", "has space", "x" * 201, "semi;colon"):
        for method in ("GET", "DELETE"):
            response = await api.request(method, f"/sources/{bad}/state", headers=ADMIN)
            assert response.status_code == 422, (method, bad, response.text)
            out = response.json()
            assert out["retryable"] is False and out["details"][0]["field"] == "path.key"
