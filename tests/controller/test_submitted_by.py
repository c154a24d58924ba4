"""Every run records who submitted it: the API key's id (a plain key's stable, non-secret
`key-<sha256 prefix>`), or `schedule:<id>` for a scheduled fire; shown in the run and in the
status list, which filters on it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.schedules.ticker import Ticker
from tests.conftest import asgi_client
from tests.schedules.helpers import Clock, controller_settings, one_step_spec

PLAIN = "k-plain-submitter-0001"
KEYS = [
    {"id": "ci", "key": "k-ci-submitter-0001", "scopes": ["read", "submit"]},
    PLAIN,  # every scope, no id of its own
]
CI = {"Authorization": "Bearer k-ci-submitter-0001"}
ADMIN = {"Authorization": f"Bearer {PLAIN}"}
PLAIN_ID = "key-" + hashlib.sha256(PLAIN.encode()).hexdigest()[:8]


async def submitters(client: httpx.AsyncClient, **params: str) -> list[str | None]:
    page = await client.get("/workflows/status", params=params, headers=ADMIN)
    assert page.status_code == 200, page.text
    return [item["submitted_by"] for item in page.json()["items"]]


async def test_a_run_records_the_key_that_submitted_it(module_env: dict) -> None:
    async with asgi_client(create_app(controller_settings(module_env, api_keys=KEYS))) as client:
        spec = one_step_spec("by_key")
        assert (await client.post("/workflows/definitions", json=spec, headers=ADMIN)).is_success
        by_ci = await client.post("/coordinate", json={"workflow": "by_key"}, headers=CI)
        by_plain = await client.post("/coordinate", json={"spec": spec}, headers=ADMIN)
        assert by_ci.status_code == 202 and by_plain.status_code == 202

        detail = (await client.get(by_ci.json()["status_url"], headers=CI)).json()
        assert detail["submitted_by"] == "ci"
        plain = (await client.get(by_plain.json()["status_url"], headers=CI)).json()
        assert plain["submitted_by"] == PLAIN_ID and PLAIN not in str(plain)

        assert set(await submitters(client, workflow="by_key")) == {"ci", PLAIN_ID}
        assert await submitters(client, submitted_by="ci") == ["ci"]
        only = await client.get("/workflows/status", params={"submitted_by": "ci"}, headers=CI)
        assert [i["run_id"] for i in only.json()["items"]] == [by_ci.json()["run_id"]]
        assert only.json()["total"] == 1
        assert await submitters(client, submitted_by="nobody") == []
        too_long = await client.get("/workflows/status?submitted_by=" + "x" * 101, headers=CI)
        assert too_long.status_code == 422 and "submitted_by" in too_long.json()["message"]


async def test_a_scheduled_run_is_submitted_by_its_schedule(module_env: dict) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    clock = Clock(t0 + timedelta(minutes=30))
    app = create_app(controller_settings(module_env, api_keys=KEYS))
    app.state.clock = clock
    async with asgi_client(app) as client:
        spec = one_step_spec("by_schedule")
        assert (await client.post("/workflows/definitions", json=spec, headers=ADMIN)).is_success
        created = await client.post(
            "/schedules",
            json={"name": "sub_hourly", "workflow": "by_schedule", "cron": "0 * * * *"},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        clock.set(t0 + timedelta(hours=1, seconds=1))
        ticker = Ticker(app.state.settings, app.state.sessionmaker, app.state.policies, clock)
        [run_id] = await ticker.tick()
        detail = (await client.get(f"/workflows/{run_id}", headers=ADMIN)).json()
        assert detail["submitted_by"] == f"schedule:{created.json()['id']}"
        mine = await submitters(client, submitted_by=f"schedule:{created.json()['id']}")
        assert mine == [detail["submitted_by"]]
