"""shared/auth.py through a real app: API keys with scopes for clients, the service token for
calls between services; 401 for a missing or unknown token, 403 for a missing scope."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.auth import ApiKey, key_id, require_scope, require_token, service_headers
from shared.errors import register_exception_handlers

KEYS = [
    ApiKey("reader", "r-key", frozenset({"read"})),
    ApiKey("blank", "", frozenset({"read", "submit", "admin"})),  # never matches anything
    ApiKey(key_id("s-key"), "s-key", frozenset({"read", "submit"})),
]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    register_exception_handlers(app)

    @app.get("/submit")
    async def submit(request: Request) -> dict[str, str]:
        found = require_scope(request, KEYS, "submit")
        return {"key": found.id, "recorded": request.state.api_key_id}

    @app.get("/internal")
    async def internal(request: Request) -> dict[str, bool]:
        require_token(request, ["", "svc-token"])
        return {"ok": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_key_with_the_scope_passes_and_is_recorded(client: httpx.AsyncClient) -> None:
    response = await client.get("/submit", headers=_bearer("s-key"))
    assert response.status_code == 200
    assert response.json() == {"key": key_id("s-key"), "recorded": key_id("s-key")}
    assert key_id("s-key").startswith("key-") and "s-key" not in key_id("s-key")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Basic r-key"}, 401, "unauthorized"),
        ({"Authorization": "Bearer "}, 401, "unauthorized"),
        (_bearer("nope"), 401, "unauthorized"),
        (_bearer(""), 401, "unauthorized"),
        (_bearer("r-key"), 403, "missing_scope"),
    ],
)
async def test_a_key_without_the_scope_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, code: str
) -> None:
    response = await client.get("/submit", headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


async def test_the_refusal_names_the_scopes_the_key_has(client: httpx.AsyncClient) -> None:
    response = await client.get("/submit", headers=_bearer("r-key"))
    assert "'reader' lacks the 'submit' scope (it has: read)" in response.json()["message"]


async def test_services_call_each_other_with_the_service_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/internal", headers=service_headers("svc-token"))).status_code == 200
    assert (await client.get("/internal", headers={"authorization": "bearer svc-token"})).json()
    for refused in (service_headers("s-key"), {}):
        assert (await client.get("/internal", headers=refused)).status_code == 401
