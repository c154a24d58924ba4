"""A value PostgreSQL refuses in a query parameter (a NUL character) is the request's 422
`value_refused` on any route, not a 500 (the fuzzer found `GET /workflows/definitions?name=%00`),
and the refusal breaks nothing for the next request."""

from __future__ import annotations

import pytest

from tests.schedules.helpers import AUTH, controller


@pytest.mark.parametrize("path", ["/workflows/definitions?name=a%00b", "/schedules?workflow=%00"])
async def test_a_nul_in_a_query_value_is_a_422(module_env: dict, path: str) -> None:
    async with controller(module_env) as (_, client):
        response = await client.get(path, headers=AUTH)
        after = await client.get("/workflows/definitions", headers=AUTH)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "value_refused" and body["retryable"] is False
    assert "0x00" in body["message"]
    assert after.status_code == 200
