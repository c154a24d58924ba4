"""data-scheduler over HTTP: cron validation, DST-correct next runs, change-rate recommendations."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agents.base.settings import AgentSettings
from agents.data_scheduler.app import create_app
from tests.conftest import asgi_client, service_auth


@pytest.fixture
async def client(common_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(AgentSettings(**common_env))) as client:
        yield client


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/api/v1/{action}", json=body, headers=service_auth())


async def test_validate_accepts_good_expressions_and_explains_bad_ones(
    client: httpx.AsyncClient,
) -> None:
    good = (
        await call(client, "validate", {"cron": "*/15 9-17 * * 1-5", "timezone": "Europe/Berlin"})
    ).json()
    assert good["valid"] is True
    assert good["description"] == "every 15 minutes, hours 9-17, on weekdays Mon-Fri"
    next_run = datetime.fromisoformat(good["next_run"])
    assert next_run > datetime.now(UTC) and next_run.utcoffset() in (
        timedelta(hours=1),
        timedelta(hours=2),
    )
    assert next_run.minute % 15 == 0 and 9 <= next_run.hour <= 17 and next_run.isoweekday() <= 5
    for body, fragment in [
        ({"cron": "61 * * * *"}, "out of range"),
        ({"cron": "* * *"}, "5 fields"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "time zone"),
    ]:
        answer = (await call(client, "validate", body)).json()
        assert answer["valid"] is False and fragment in answer["error"]


async def test_next_runs_cross_the_spring_forward_gap(client: httpx.AsyncClient) -> None:
    body = {
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "count": 3,
        "start": "2026-03-28T00:00:00+01:00",
    }
    runs = (await call(client, "next_runs", body)).json()["next_runs"]
    # 02:30 does not exist on 29 March: that run happens once, shifted by the gap.
    assert runs == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    hourly = {**body, "cron": "0 * * * *", "count": 3, "start": "2026-03-29T00:30:00+01:00"}
    runs = (await call(client, "next_runs", hourly)).json()["next_runs"]
    assert runs == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


async def test_next_runs_cross_the_fall_back_overlap(client: httpx.AsyncClient) -> None:
    daily = {
        "cron": "30 1 * * *",
        "timezone": "America/New_York",
        "count": 2,
        "start": "2026-10-31T12:00:00",
    }
    runs = (await call(client, "next_runs", daily)).json()["next_runs"]
    # 01:30 happens twice on 1 November: a daily job runs once, at the first.
    assert runs == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    every_30 = {**daily, "cron": "*/30 * * * *", "count": 6, "start": "2026-11-01T00:45:00-04:00"}
    runs = (await call(client, "next_runs", every_30)).json()["next_runs"]
    # A job every 30 minutes keeps its pace through both 01:xx hours.
    assert runs == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]
    instants = [datetime.fromisoformat(r) for r in runs]
    assert all(b - a == timedelta(minutes=30) for a, b in zip(instants, instants[1:], strict=False))


async def test_next_runs_refuses_bad_input_naming_the_field(client: httpx.AsyncClient) -> None:
    bad_zone = await call(client, "next_runs", {"cron": "0 * * * *", "timezone": "Nowhere"})
    assert bad_zone.status_code == 422 and "timezone" in bad_zone.json()["message"]
    bad_cron = await call(client, "next_runs", {"cron": "0 25 * * *"})
    assert bad_cron.status_code == 422 and bad_cron.json()["error"] == "invalid_cron"
    too_many = await call(client, "next_runs", {"cron": "0 * * * *", "count": 5000})
    assert too_many.status_code == 422 and "count" in too_many.json()["message"]
    never = await call(client, "next_runs", {"cron": "0 0 30 2 *", "count": 3})
    assert never.status_code == 200 and never.json()["next_runs"] == []


def poisson_history(rate_per_hour: float, poll_minutes: int, polls: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rate = rate_per_hour / 3600
    at = datetime(2026, 1, 1, tzinfo=UTC)
    next_change = at + timedelta(seconds=rng.expovariate(rate))
    history = [{"at": at.isoformat(), "changed": False}]
    for _ in range(polls):
        at += timedelta(minutes=poll_minutes + rng.uniform(-2, 2))  # irregular polling
        changed = False
        while next_change <= at:
            changed = True
            next_change += timedelta(seconds=rng.expovariate(rate))
        history.append({"at": at.isoformat(), "changed": changed})
    return history


@pytest.mark.parametrize(
    ("rate_per_hour", "poll_minutes", "interval_s", "cron"),
    [(0.5, 15, 3600, "0 * * * *"), (5, 5, 600, "*/10 * * * *"), (0.1, 60, 28800, "0 */8 * * *")],
)
async def test_recommend_estimates_the_change_rate(
    client: httpx.AsyncClient, rate_per_hour: float, poll_minutes: int, interval_s: int, cron: str
) -> None:
    history = poisson_history(rate_per_hour, poll_minutes, 2000, seed=7)
    response = await call(client, "recommend", {"history": history})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["change_rate_per_hour"] == pytest.approx(rate_per_hour, rel=0.2)
    assert (result["recommended_interval_s"], result["cron"]) == (interval_s, cron)
    assert result["evidence"]["observations"] == 2001
    assert result["evidence"]["rate_standard_error_per_hour"] > 0


async def test_recommend_with_rows_and_edge_histories(client: httpx.AsyncClient) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    quiet = [{"at": (start + timedelta(hours=h)).isoformat(), "rows": 0} for h in range(48)]
    result = (await call(client, "recommend", {"history": quiet, "max_interval_s": 86400})).json()
    assert result["method"].startswith("upper bound")
    assert result["recommended_interval_s"] == 43200  # 47 h / 3 rounded down to a cron step
    busy = [{"at": (start + timedelta(minutes=10 * i)).isoformat(), "rows": 5} for i in range(30)]
    result = (await call(client, "recommend", {"history": busy, "min_interval_s": 120})).json()
    assert result["recommended_interval_s"] == 120 and result["cron"] == "*/2 * * * *"
    one = await call(client, "recommend", {"history": quiet[:1]})
    assert one.status_code == 422 and "history" in one.json()["message"]
    neither = await call(client, "recommend", {"history": [{"at": start.isoformat()}] * 2})
    assert neither.status_code == 422
