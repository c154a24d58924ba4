"""Hardening finding 4: reads needed no key (every input and output of every run, 24 MB in one
response). Keys now carry scopes: reads need `read`, runs `submit`, configuration `admin`;
401 for a missing or unknown key, 403 for a missing scope; several keys valid at once."""

from __future__ import annotations

from services.orchestrator_controller.app import create_app
from tests.conftest import asgi_client
from tests.schedules.helpers import controller_settings, one_step_spec

KEYS = [
    {"id": "dashboards", "key": "k-read-only-0001", "scopes": ["read"]},
    {"id": "ci", "key": "k-submit-0001", "scopes": ["read", "submit"]},
    {"id": "ops", "key": "k-admin-0001", "scopes": ["read", "submit", "admin"]},
    "k-legacy-plain-0001",  # a plain string: every scope (keys from before scopes existed)
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


READS = ["/workflows/status", "/workflows/definitions", "/schedules", "/orchestrators"]


async def test_reads_need_a_key_with_the_read_scope(module_env: dict) -> None:
    async with asgi_client(create_app(controller_settings(module_env, api_keys=KEYS))) as client:
        for path in READS:
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers=bearer("nope"))).status_code == 401, path
            ok = await client.get(path, headers=bearer("k-read-only-0001"))
            assert ok.status_code == 200, (path, ok.text)
        unknown_run = await client.get(
            "/workflows/00000000-0000-0000-0000-000000000000", headers=bearer("nope")
        )
        assert unknown_run.status_code == 401  # no key, no hint whether the run exists
        for feed in ("/events", "/workflows/00000000-0000-0000-0000-000000000000/events"):
            assert (await client.get(feed)).status_code == 401, feed
        assert (await client.get("/health")).status_code == 200  # probes stay open


async def test_each_write_needs_its_scope(module_env: dict) -> None:
    async with asgi_client(create_app(controller_settings(module_env, api_keys=KEYS))) as client:
        run = {"spec": one_step_spec("scoped"), "inputs": {}}
        refused = await client.post("/coordinate", json=run, headers=bearer("k-read-only-0001"))
        assert refused.status_code == 403 and refused.json()["error"] == "missing_scope"
        assert "dashboards" in refused.json()["message"]  # the key's id, never the key
        assert "k-read-only" not in refused.text
        submitted = await client.post("/coordinate", json=run, headers=bearer("k-submit-0001"))
        assert submitted.status_code == 202, submitted.text

        spec = one_step_spec("scoped_def")
        no_admin = await client.post(
            "/workflows/definitions", json=spec, headers=bearer("k-submit-0001")
        )
        assert no_admin.status_code == 403
        for key in ("k-admin-0001", "k-legacy-plain-0001"):  # two keys valid at once
            done = await client.post("/workflows/definitions", json=spec, headers=bearer(key))
            assert done.status_code in (200, 201), done.text
        listed = await client.get(
            "/workflows/definitions?name=scoped_def", headers=bearer("k-read-only-0001")
        )
        assert [d["name"] for d in listed.json()["items"]] == ["scoped_def"]
