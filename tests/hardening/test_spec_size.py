"""Hardening finding 5: a 10 MB spec was stored, and made every GET /workflows/definitions
10 MB. A spec past CONTROLLER_MAX_SPEC_BYTES is now a 413 naming the limit and the size, for
a definition and an inline spec alike; the listing carries summaries, the spec on request."""

from __future__ import annotations

from sqlalchemy import func, select

from shared.db.models import WorkflowDefinition, WorkflowRun
from tests.schedules.helpers import AUTH, controller, one_step_spec

LIMIT = 8 * 1024


def padded_spec(name: str, size: int, **extra: str) -> dict:
    """A valid spec whose one step's params alone are `size` characters."""
    spec = one_step_spec(name, **extra)
    spec["steps"][0]["params"] = {"blob": "x" * size}
    return spec


async def test_a_spec_over_the_limit_is_a_413_and_nothing_is_stored(module_env: dict) -> None:
    async with controller(module_env, max_spec_bytes=LIMIT) as (app, client):
        too_big = await client.post(
            "/workflows/definitions", json=padded_spec("big_spec", LIMIT), headers=AUTH
        )
        assert too_big.status_code == 413, too_big.text
        body = too_big.json()
        assert body["error"] == "spec_too_large" and body["retryable"] is False
        assert "CONTROLLER_MAX_SPEC_BYTES" in body["message"] and str(LIMIT) in body["message"]
        assert body["details"]["limit_bytes"] == LIMIT
        assert body["details"]["size_bytes"] > LIMIT
        assert str(body["details"]["size_bytes"]) in body["message"]

        inline = await client.post(
            "/coordinate", json={"spec": padded_spec("big_inline", LIMIT)}, headers=AUTH
        )
        assert inline.status_code == 413 and inline.json()["error"] == "spec_too_large"
        async with app.state.sessionmaker() as session:
            stored = await session.scalar(
                select(func.count()).where(WorkflowDefinition.name.like("big_%"))
            )
            runs = await session.scalar(
                select(func.count()).where(WorkflowRun.workflow_name == "big_inline")
            )
        assert stored == 0 and runs == 0

        fits = await client.post(
            "/workflows/definitions", json=padded_spec("big_fits", LIMIT // 2), headers=AUTH
        )
        assert fits.status_code == 201, fits.text
        assert fits.json()["spec"]["steps"][0]["params"]["blob"] == "x" * (LIMIT // 2)


async def test_the_listing_is_summaries_and_the_spec_comes_on_request(module_env: dict) -> None:
    async with controller(module_env) as (_, client):  # the default limit (256 KiB)
        large = padded_spec("large_spec", 200_000, description="d" * 2_000)
        assert (
            await client.post("/workflows/definitions", json=large, headers=AUTH)
        ).status_code == 201
        listed = await client.get("/workflows/definitions", headers=AUTH)
        assert listed.status_code == 200 and len(listed.content) < 5_000, len(listed.content)
        [item] = [d for d in listed.json()["items"] if d["name"] == "large_spec"]
        assert item["spec"] is None and item["steps"] == 1 and item["version"] == 1
        assert item["kind"] == "standard" and item["archived"] is False
        assert item["description"] == "d" * 500  # the start of it; the spec has it all
        assert set(item) >= {"name", "version", "description", "kind", "created_at", "archived"}

        full = await client.get(
            "/workflows/definitions",
            params={"name": "large_spec", "include_spec": "true"},
            headers=AUTH,
        )
        [with_spec] = full.json()["items"]
        assert with_spec["spec"]["steps"][0]["params"]["blob"] == "x" * 200_000
        assert with_spec["spec"]["description"] == "d" * 2_000
