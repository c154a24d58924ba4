"""One bad /coordinate request fails alone: it never takes the requests batched with it down.

Hardening finding 2: a spec nested 900 levels deep raised inside the shared admission
transaction, and 55 of 60 good requests sent at the same moment got a 500 and were not stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text

from tests.schedules.helpers import AUTH, controller, one_step_spec


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"x": value}
    return value


def _deep_spec(depth: int) -> dict[str, Any]:
    spec = one_step_spec("deep")
    spec["steps"][0]["params"] = {"payload": _nested(depth)}
    return spec


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/coordinate", json=body, headers=AUTH)


async def _stored_runs(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        return (await session.execute(text("SELECT count(*) FROM workflow_runs"))).scalar_one()


async def test_a_deeply_nested_spec_is_a_422_naming_the_limit(env: dict) -> None:
    async with controller(env) as (app, client):
        response = await _post(client, {"spec": _deep_spec(900), "inputs": {}})
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "too_deep"
        assert "CONTROLLER_MAX_NESTING_DEPTH" in body["message"]
        assert "steps[0].params" in body["message"]
        assert await _stored_runs(app) == 0


async def test_deep_inputs_are_refused_too(env: dict) -> None:
    async with controller(env) as (_, client):
        spec = one_step_spec("deep_inputs")
        spec["inputs"] = {"blob": {"type": "object"}}
        response = await _post(client, {"spec": spec, "inputs": {"blob": _nested(200)}})
        assert response.status_code == 422, response.text
        assert "inputs" in response.json()["message"]


async def test_one_bad_request_among_sixty_good_ones_fails_alone(env: dict) -> None:
    async with controller(env) as (app, client):
        good = {"spec": one_step_spec("good"), "inputs": {}}
        bad = {"spec": _deep_spec(900), "inputs": {}}
        sent = [good] * 30 + [bad] + [good] * 30
        responses = await asyncio.gather(*(_post(client, b) for b in sent))
        codes = [r.status_code for r in responses]
        assert codes[30] == 422, responses[30].text
        assert codes[:30] + codes[31:] == [202] * 60, codes
        assert await _stored_runs(app) == 60


async def test_an_unexpected_error_in_a_batch_fails_only_its_own_request(env: dict) -> None:
    """A failure the validation did not foresee is retried one by one, not spread to all.

    The trigger is a string PostgreSQL refuses inside JSONB (a NUL character, \\u0000), which
    pydantic accepts and only the database's INSERT rejects: an error inside the batch.
    """
    async with controller(env) as (app, client):
        good = {"spec": one_step_spec("good"), "inputs": {}}
        poisoned = one_step_spec("poisoned")
        poisoned["steps"][0]["params"] = {"note": "nul \u0000 here"}
        sent = [good] * 20 + [{"spec": poisoned, "inputs": {}}] + [good] * 20
        responses = await asyncio.gather(*(_post(client, b) for b in sent))
        codes = [r.status_code for r in responses]
        assert codes[:20] + codes[21:] == [202] * 40, codes
        assert codes[20] == 422, responses[20].text
        assert responses[20].json()["error"] == "value_refused"
        assert await _stored_runs(app) == 40


async def test_a_deeply_nested_definition_is_refused_and_not_stored(env: dict) -> None:
    async with controller(env) as (app, client):
        response = await client.post("/workflows/definitions", json=_deep_spec(900), headers=AUTH)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "too_deep"
        async with app.state.sessionmaker() as session:
            stored = await session.execute(
                text("SELECT count(*) FROM workflow_definitions WHERE name = 'deep'")
            )
            assert stored.scalar_one() == 0
