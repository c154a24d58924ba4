"""CRUD under /schedules on a real PostgreSQL schema, with the controller's clock held still."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shared.db.models import Schedule
from tests.schedules.helpers import AUTH, Clock, controller, one_step_spec

NOW = datetime(2026, 1, 1, 5, 10, tzinfo=UTC)


def cron_body(name: str = "nightly", **extra: Any) -> dict[str, Any]:
    return {"name": name, "workflow": "wf", "cron": "0 */6 * * *", **extra}


async def schedule_count(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Schedule))).scalar_one()


async def register(client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
    response = await client.post("/workflows/definitions", json=spec, headers=AUTH)
    assert response.status_code in (200, 201), response.text


async def test_create_shows_next_fire_times_and_reads_back(env: dict) -> None:
    async with controller(env, Clock(NOW)) as (_, client):
        await register(client, one_step_spec("wf"))
        created = await client.post("/schedules", json=cron_body(), headers=AUTH)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["trigger"] == "cron" and body["enabled"] and body["source"] == "api"
        assert body["next_fire_times"][:3] == [
            "2026-01-01T06:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-01T18:00:00Z",
        ]
        assert body["last_runs"] == []
        by_name = await client.get("/schedules/nightly", params={"next": 2})
        by_id = await client.get(f"/schedules/{body['id']}")
        assert by_name.json()["id"] == by_id.json()["id"] == body["id"]
        assert len(by_name.json()["next_fire_times"]) == 2
        listed = (await client.get("/schedules", params={"workflow": "wf"})).json()["items"]
        assert [s["name"] for s in listed] == ["nightly"]


async def test_cron_is_read_in_its_time_zone(env: dict) -> None:
    async with controller(env, Clock(NOW)) as (_, client):
        await register(client, one_step_spec("wf"))
        body = cron_body("tokyo", cron="0 9 * * *", timezone="Asia/Tokyo")
        created = (await client.post("/schedules", json=body, headers=AUTH)).json()
        # 05:10 UTC is 14:10 in Tokyo: the next 09:00 there is 00:00 UTC the next day
        assert created["next_fire_times"][0] == "2026-01-02T00:00:00Z"


async def test_interval_and_continuous_schedules(env: dict) -> None:
    async with controller(env, Clock(NOW)) as (_, client):
        await register(client, one_step_spec("wf"))
        interval = {"name": "every-15m", "workflow": "wf", "interval_s": 900}
        made = (await client.post("/schedules", json=interval, headers=AUTH)).json()
        assert made["trigger"] == "interval"
        assert made["next_fire_times"][:2] == ["2026-01-01T05:25:00Z", "2026-01-01T05:40:00Z"]
        continuous = {"name": "forever", "workflow": "wf", "continuous": True, "min_interval_s": 5}
        made = (await client.post("/schedules", json=continuous, headers=AUTH)).json()
        assert made["trigger"] == "continuous" and made["min_interval_s"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (cron_body(cron="0 25 * * *"), "cron"),
        (cron_body(cron="every day"), "cron"),
        (cron_body(timezone="Mars/Olympus"), "timezone"),
        (cron_body(workflow="no-such-workflow"), "workflow"),
        (cron_body(inputs={"surprise": 1}), "inputs.surprise"),
        (cron_body(interval_s=60), "cron"),  # two triggers
        ({"name": "x", "workflow": "wf"}, "cron"),  # no trigger
        (cron_body(catchup="sometimes"), "catchup"),
        (cron_body(overlap="queue"), "overlap"),
        (cron_body(name="Bad Name"), "name"),
        (cron_body(extra=1), "extra"),
    ],
)
async def test_bad_schedules_get_422_naming_the_field(
    env: dict, body: dict[str, Any], field: str
) -> None:
    async with controller(env, Clock(NOW)) as (app, client):
        await register(client, one_step_spec("wf"))
        response = await client.post("/schedules", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        assert field in response.json()["message"] or field in str(response.json()["details"])
        assert await schedule_count(app) == 0


async def test_required_inputs_are_checked_against_the_workflow(env: dict) -> None:
    spec = one_step_spec("needs-n", inputs={"n": {"type": "integer", "required": True}})
    async with controller(env, Clock(NOW)) as (app, client):
        await register(client, spec)
        missing = await client.post("/schedules", json=cron_body(workflow="needs-n"), headers=AUTH)
        assert missing.status_code == 422 and "inputs.n" in missing.text
        ok = await client.post(
            "/schedules", json=cron_body(workflow="needs-n", inputs={"n": 3}), headers=AUTH
        )
        assert ok.status_code == 201
        assert await schedule_count(app) == 1


async def test_writes_need_an_api_key_and_names_are_unique(env: dict) -> None:
    async with controller(env, Clock(NOW)) as (app, client):
        await register(client, one_step_spec("wf"))
        assert (await client.post("/schedules", json=cron_body())).status_code == 401
        assert (await client.post("/schedules", json=cron_body(), headers=AUTH)).status_code == 201
        again = await client.post("/schedules", json=cron_body(), headers=AUTH)
        assert again.status_code == 409 and again.json()["error"] == "schedule_exists"
        assert (await client.patch("/schedules/nightly", json={})).status_code == 401
        assert (await client.delete("/schedules/nightly")).status_code == 401
        assert await schedule_count(app) == 1


async def test_patch_retimes_disables_and_validates(env: dict) -> None:
    clock = Clock(NOW)
    async with controller(env, clock) as (_, client):
        await register(client, one_step_spec("wf"))
        await client.post("/schedules", json=cron_body(), headers=AUTH)
        hourly = await client.patch("/schedules/nightly", json={"cron": "@hourly"}, headers=AUTH)
        assert hourly.status_code == 200, hourly.text
        assert hourly.json()["next_fire_times"][0] == "2026-01-01T06:00:00Z"
        assert hourly.json()["cron"] == "0 * * * *"
        to_interval = await client.patch(
            "/schedules/nightly", json={"interval_s": 600}, headers=AUTH
        )
        assert to_interval.json()["trigger"] == "interval" and to_interval.json()["cron"] is None
        off = await client.patch("/schedules/nightly", json={"enabled": False}, headers=AUTH)
        assert off.json()["enabled"] is False and off.json()["next_fire_times"] == []
        clock.advance(hours=3, minutes=5)
        on = await client.patch("/schedules/nightly", json={"enabled": True}, headers=AUTH)
        # re-enabling restarts the clock at 08:15: nothing is owed for the time it was off,
        # and the interval keeps its phase (05:20 + k * 10 min)
        assert on.json()["next_fire_times"][0] == "2026-01-01T08:20:00Z"
        bad = await client.patch("/schedules/nightly", json={"cron": "99 * * * *"}, headers=AUTH)
        assert bad.status_code == 422 and "cron" in bad.text
        unknown = await client.patch(
            "/schedules/nightly", json={"workflow": "nothing"}, headers=AUTH
        )
        assert unknown.status_code == 422 and "workflow" in unknown.text
        unchanged = (await client.get("/schedules/nightly")).json()
        assert unchanged["trigger"] == "interval" and unchanged["workflow"] == "wf"


async def test_delete_and_404(env: dict) -> None:
    async with controller(env, Clock(NOW)) as (app, client):
        await register(client, one_step_spec("wf"))
        await client.post("/schedules", json=cron_body(), headers=AUTH)
        assert (await client.delete("/schedules/nightly", headers=AUTH)).status_code == 204
        assert (await client.get("/schedules/nightly")).status_code == 404
        assert (await client.delete("/schedules/nightly", headers=AUTH)).status_code == 404
        missing = await client.patch("/schedules/nope", json={"priority": 1}, headers=AUTH)
        assert missing.status_code == 404
        assert await schedule_count(app) == 0


async def test_trigger_now_runs_the_schedule_outside_its_timetable(env: dict) -> None:
    async with controller(env, Clock(NOW)) as (app, client):
        await register(client, one_step_spec("wf"))
        made = (await client.post("/schedules", json=cron_body(), headers=AUTH)).json()
        assert (await client.post("/schedules/nightly/trigger")).status_code == 401
        assert (await client.post("/schedules/no-such/trigger", headers=AUTH)).status_code == 404

        fired = await client.post("/schedules/nightly/trigger", headers=AUTH)
        assert fired.status_code == 202, fired.text
        run = (await client.get(fired.json()["status_url"], headers=AUTH)).json()
        assert run["workflow"] == "wf" and run["submitted_by"] is not None
        shown = (await client.get("/schedules/nightly", headers=AUTH)).json()
        assert shown["next_fire_times"] == made["next_fire_times"]  # the timetable is as it was
        [fire] = shown["last_runs"]
        assert fire["run_id"] == run["run_id"] and fire["detail"].startswith("triggered now by")

        # Its run is still PENDING (no engine here) and overlap is `skip`: a second is a 409.
        busy = await client.post("/schedules/nightly/trigger", headers=AUTH)
        assert busy.status_code == 409 and busy.json()["error"] == "schedule_busy"
        assert busy.json()["details"]["run_id"] == run["run_id"]
        patched = await client.patch("/schedules/nightly", json={"overlap": "allow"}, headers=AUTH)
        assert patched.status_code == 200, patched.text
        again = await client.post("/schedules/nightly/trigger", headers=AUTH)
        assert again.status_code == 202 and again.json()["run_id"] != run["run_id"]
