"""Hardening finding 8: integers past PostgreSQL's range were a 500 (asyncpg out of range);
now each is a 422 naming the field, and nothing changes."""

from __future__ import annotations

import pytest

from tests.schedules.helpers import AUTH, controller, one_step_spec


@pytest.mark.parametrize("offset", ["9223372036854775808", "2147483648", "-1"])
async def test_an_offset_out_of_range_is_a_422(module_env: dict, offset: str) -> None:
    async with controller(module_env) as (_, client):
        response = await client.get(f"/workflows/status?offset={offset}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert "offset" in response.json()["message"]


async def test_versions_out_of_range_are_422s(module_env: dict) -> None:
    async with controller(module_env) as (_, client):
        by_name = await client.post(
            "/coordinate", json={"workflow": "test", "version": 2**40}, headers=AUTH
        )
        inline = await client.post(
            "/coordinate",
            json={"spec": {**one_step_spec("big"), "version": 2**40}, "inputs": {}},
            headers=AUTH,
        )
        definition = await client.post(
            "/workflows/definitions", json={**one_step_spec("big"), "version": 2**40}, headers=AUTH
        )
    for response, field in (
        (by_name, "version"),
        (inline, "spec.version"),
        (definition, "version"),
    ):
        assert response.status_code == 422, response.text
        assert field in response.json()["message"]
