"""Requests to /coordinate that arrive together are admitted in shared transactions, with the
same answers as one by one: caps hold, a repeated Idempotency-Key makes one run."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.schedules.helpers import AUTH, controller, one_step_spec


def _batches(app: FastAPI) -> tuple[float, float]:
    """(transactions, runs) the admission batcher has committed."""
    registry = app.state.admissions.metrics.registry
    count = registry.get_sample_value("admission_batch_size_count") or 0.0
    total = registry.get_sample_value("admission_batch_size_sum") or 0.0
    return count, total


async def _post(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    return await client.post("/coordinate", json=body, headers=headers)


async def test_concurrent_requests_share_transactions_and_the_cap_still_holds(env: dict) -> None:
    config = {"orchestrators": {"batch_manager": {"max_concurrent_runs": 5}}}
    async with controller(env, **config) as (app, client):
        body = {"spec": one_step_spec("together"), "inputs": {}}
        responses = await asyncio.gather(*(_post(client, body) for _ in range(40)))
        assert [r.status_code for r in responses] == [202] * 40
        assert len({r.json()["run_id"] for r in responses}) == 40
        transactions, runs = _batches(app)
        assert runs == 40 and transactions < 40, (transactions, runs)
        async with app.state.sessionmaker() as session:
            admitted, waiting = (
                await session.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE admitted_at IS NOT NULL), "
                        "count(*) FILTER (WHERE admitted_at IS NULL "
                        "AND status_reason LIKE 'waiting: overall concurrency cap 5%') "
                        "FROM workflow_runs"
                    )
                )
            ).one()
        assert (admitted, waiting) == (5, 35)


async def test_a_key_repeated_within_one_batch_makes_one_run(env: dict) -> None:
    async with controller(env) as (app, client):
        body = {"spec": one_step_spec("once"), "inputs": {}}
        other = {"spec": one_step_spec("once"), "inputs": {}, "priority": 3}
        sent = [body] * 20 + [other] * 5
        responses = await asyncio.gather(*(_post(client, b, key="same-key") for b in sent))
        codes = [r.status_code for r in responses]
        # Whichever body came first owns the key; the other body is a conflict.
        winner = body if codes[0] in (200, 202) else other
        for sent_body, response in zip(sent, responses, strict=True):
            if sent_body is winner:
                assert response.status_code in (200, 202), response.text
            else:
                assert response.status_code == 409, response.text
                assert response.json()["error"] == "idempotency_key_reused"
        assert codes.count(202) == 1
        assert len({r.json()["run_id"] for r in responses if r.status_code != 409}) == 1
        async with app.state.sessionmaker() as session:
            assert (await session.execute(text("SELECT count(*) FROM workflow_runs"))).scalar() == 1
        _, runs = _batches(app)
        assert runs == 25
