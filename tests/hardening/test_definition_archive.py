"""Hardening finding 5 (end): definitions could not be deleted. DELETE now archives one
version or every version: hidden from the listing, refused for new runs (409), its runs still
readable; blocked while an enabled schedule would fire it; a built-in stays archived across a
restart; POST .../restore takes it back."""

from __future__ import annotations

import httpx

from services.orchestrator_controller.app import create_app
from tests.conftest import asgi_client
from tests.schedules.helpers import (
    AUTH,
    controller,
    controller_settings,
    one_step_spec,
)

KEYS = [
    {"id": "dashboards", "key": "k-arch-read-0001", "scopes": ["read"]},
    {"id": "ci", "key": "k-arch-submit-0001", "scopes": ["read", "submit"]},
    "k-sched",  # AUTH: every scope
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _versions(client: httpx.AsyncClient, name: str, **params: str) -> list[tuple[int, bool]]:
    listed = await client.get(
        "/workflows/definitions", params={"name": name, **params}, headers=AUTH
    )
    assert listed.status_code == 200, listed.text
    return [(d["version"], d["archived"]) for d in listed.json()["items"]]


async def test_archiving_hides_a_version_from_lists_and_new_runs(module_env: dict) -> None:
    async with asgi_client(create_app(controller_settings(module_env, api_keys=KEYS))) as client:
        for version in (1, 2):
            spec = one_step_spec("arch_wf", version=version)
            assert (await client.post("/workflows/definitions", json=spec, headers=AUTH)).is_success
        before = await client.post("/coordinate", json={"workflow": "arch_wf"}, headers=AUTH)
        assert before.status_code == 202 and before.json()["version"] == 2

        path = "/workflows/definitions/arch_wf"
        assert (await client.delete(path)).status_code == 401
        assert (await client.delete(path, headers=bearer("nope"))).status_code == 401
        for key in ("k-arch-read-0001", "k-arch-submit-0001"):
            refused = await client.delete(path, headers=bearer(key))
            assert refused.status_code == 403 and refused.json()["error"] == "missing_scope"
        unknown = await client.delete("/workflows/definitions/no_such_wf", headers=AUTH)
        assert unknown.status_code == 404 and "no_such_wf" in unknown.json()["message"]
        no_version = await client.delete(f"{path}?version=7", headers=AUTH)
        assert no_version.status_code == 404 and "version 7" in no_version.json()["message"]
        bad = await client.delete(f"{path}?version=0", headers=AUTH)
        assert bad.status_code == 422 and "version" in bad.json()["message"]
        assert await _versions(client, "arch_wf") == [(2, False), (1, False)]  # nothing changed

        archived = await client.delete(f"{path}?version=2", headers=AUTH)
        assert archived.status_code == 200, archived.text
        [item] = archived.json()["items"]
        assert item["version"] == 2 and item["archived"] and item["archived_at"]
        again = await client.delete(f"{path}?version=2", headers=AUTH)  # idempotent
        assert (
            again.status_code == 200
            and again.json()["items"][0]["archived_at"] == (item["archived_at"])
        )
        assert await _versions(client, "arch_wf") == [(1, False)]
        assert await _versions(client, "arch_wf", include_archived="true") == [
            (2, True),
            (1, False),
        ]

        pinned = await client.post(
            "/coordinate", json={"workflow": "arch_wf", "version": 2}, headers=AUTH
        )
        assert pinned.status_code == 409, pinned.text
        body = pinned.json()
        assert body["error"] == "definition_archived" and body["retryable"] is False
        assert "'arch_wf' version 2" in body["message"]
        newest = await client.post("/coordinate", json={"workflow": "arch_wf"}, headers=AUTH)
        assert newest.status_code == 202 and newest.json()["version"] == 1
        again_v2 = await client.post(
            "/workflows/definitions", json=one_step_spec("arch_wf", version=2), headers=AUTH
        )
        assert again_v2.status_code == 409 and again_v2.json()["error"] == "definition_archived"

        assert (await client.delete(path, headers=AUTH)).status_code == 200  # every version
        assert await _versions(client, "arch_wf") == []
        refused_run = await client.post("/coordinate", json={"workflow": "arch_wf"}, headers=AUTH)
        assert refused_run.status_code == 409, refused_run.text
        assert refused_run.json()["error"] == "definition_archived"
        assert "arch_wf" in refused_run.json()["message"]
        # the runs made of it stay readable
        kept = await client.get(before.json()["status_url"], headers=AUTH)
        assert kept.status_code == 200 and kept.json()["version"] == 2

        restored = await client.post(f"{path}/restore?version=1", headers=AUTH)
        assert restored.status_code == 200 and not restored.json()["items"][0]["archived"]
        assert (
            await client.post(f"{path}/restore", headers=bearer("k-arch-read-0001"))
        ).status_code == 403
        assert (
            await client.post("/workflows/definitions/nope/restore", headers=AUTH)
        ).status_code == 404
        back = await client.post("/coordinate", json={"workflow": "arch_wf"}, headers=AUTH)
        assert back.status_code == 202 and back.json()["version"] == 1


async def test_an_enabled_schedule_keeps_its_definition_from_being_archived(
    module_env: dict,
) -> None:
    async with controller(module_env) as (_, client):
        for version in (1, 2):
            spec = one_step_spec("sched_wf", version=version)
            assert (await client.post("/workflows/definitions", json=spec, headers=AUTH)).is_success
        pins: list[tuple[str, int | None]] = [("follows_newest", None), ("pinned_one", 1)]
        for name, pinned in pins:
            created = await client.post(
                "/schedules",
                json={
                    "name": name,
                    "workflow": "sched_wf",
                    "version": pinned,
                    "cron": "0 * * * *",
                },
                headers=AUTH,
            )
            assert created.status_code == 201, created.text

        whole = await client.delete("/workflows/definitions/sched_wf", headers=AUTH)
        assert whole.status_code == 409, whole.text
        assert whole.json()["error"] == "definition_in_use"
        assert whole.json()["details"]["schedules"] == ["follows_newest", "pinned_one"]
        assert "follows_newest, pinned_one" in whole.json()["message"]
        # v2 is what the unpinned schedule fires now: archiving it would move it to v1 unasked
        newest = await client.delete("/workflows/definitions/sched_wf?version=2", headers=AUTH)
        assert newest.status_code == 409
        assert newest.json()["details"]["schedules"] == ["follows_newest"]
        assert await _versions(client, "sched_wf") == [(2, False), (1, False)]

        off = await client.patch("/schedules/follows_newest", json={"enabled": False}, headers=AUTH)
        assert off.status_code == 200, off.text
        assert (
            await client.delete("/workflows/definitions/sched_wf?version=2", headers=AUTH)
        ).status_code == 200
        # enabling it again would fire v1 now: fine; enabling a schedule pinned to v2 is not
        pinned_v2 = await client.post(
            "/schedules",
            json={"name": "pinned_two", "workflow": "sched_wf", "version": 2, "cron": "0 * * * *"},
            headers=AUTH,
        )
        assert pinned_v2.status_code == 409 and pinned_v2.json()["error"] == "definition_archived"


async def test_an_archived_builtin_stays_archived_after_a_restart(module_env: dict) -> None:
    async with controller(module_env, register_builtin_workflows=True) as (_, client):
        assert await _versions(client, "test")  # a built-in (workflows/test.yaml)
        archived = await client.delete("/workflows/definitions/test", headers=AUTH)
        assert archived.status_code == 200, archived.text
        assert {d["source"] for d in archived.json()["items"]} == {"builtin"}
    async with controller(module_env, register_builtin_workflows=True) as (_, client):  # restart
        assert await _versions(client, "test") == []
        assert all(
            archived for _, archived in await _versions(client, "test", include_archived="true")
        )
        refused = await client.post("/coordinate", json={"workflow": "test"}, headers=AUTH)
        assert refused.status_code == 409 and refused.json()["error"] == "definition_archived"
        assert (await client.post("/workflows/definitions/test/restore", headers=AUTH)).is_success
    async with controller(module_env, register_builtin_workflows=True) as (_, client):
        assert await _versions(client, "test")  # restored stays restored too
