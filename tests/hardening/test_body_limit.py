"""Hardening finding 5 (bodies): a 50 MB body was read in full before its 401, and with a key
it was accepted and stored. Now a body over the service's cap is a 413 naming the setting,
before authentication, whether it declares its length or streams without one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx

from services.orchestrator_controller.app import create_app
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL
from tests.schedules.helpers import AUTH, controller_settings, one_step_spec
from tests.serving import serve


def _big_body(size: int) -> bytes:
    spec = one_step_spec("big")
    spec["description"] = "x" * size
    return httpx.Request("POST", "/", json={"spec": spec, "inputs": {}}).content


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 64 * 1024):
        yield body[i : i + 64 * 1024]


async def test_bodies_over_the_cap_are_413_before_authentication(module_env: dict) -> None:
    app = create_app(controller_settings(module_env, max_body_bytes=100_000))
    with serve(app, lifespan="on") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = _big_body(5_000_000)
            headers = {"content-type": "application/json"}
            declared = await client.post("/coordinate", content=body, headers=headers)
            streamed = await client.post(
                "/coordinate", content=_chunks(body), headers={**headers, **AUTH}
            )
            small = await client.post(
                "/coordinate", json={"spec": one_step_spec("small"), "inputs": {}}, headers=AUTH
            )
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        names = await conn.fetch(
            f'SELECT workflow_name FROM "{module_env["db_schema"]}".workflow_runs'
        )
    finally:
        await conn.close()
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "body_too_large"
        assert "CONTROLLER_MAX_BODY_BYTES" in response.json()["message"]
    assert small.status_code == 202, small.text
    assert [r["workflow_name"] for r in names] == ["small"]
