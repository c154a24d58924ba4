"""Retention: a run that finished more than `retention_days` ago is deleted with its steps,
its published events and its Idempotency-Key; every other run stays as it was."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.retention import RetentionLoop
from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.schedules.helpers import (
    AUTH,
    controller,
    controller_settings,
    finish_run,
    one_step_spec,
)


@pytest.fixture
async def db(module_env: dict) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(**module_env))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _submit(api: httpx.AsyncClient, key: str | None = None) -> httpx.Response:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    body = {"spec": one_step_spec("kept_or_not")}
    response = await api.post("/coordinate", json=body, headers=headers)
    assert response.status_code in (200, 202), response.text
    return response


async def _rows(db: async_sessionmaker, sql: str, **params: Any) -> int:
    async with db() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def _age(db: async_sessionmaker, run_id: str, days: float) -> None:
    """Move the run's end `days` into the past (as if that much time had gone by)."""
    async with db() as session, session.begin():
        await session.execute(
            text(
                "UPDATE workflow_runs SET finished_at = now() - make_interval(days => :d), "
                "created_at = now() - make_interval(days => :d) WHERE id = :id"
            ),
            {"d": days, "id": uuid.UUID(run_id)},
        )


async def test_runs_past_retention_go_with_their_history_and_the_rest_stay(
    module_env: dict, db: async_sessionmaker
) -> None:
    schema = module_env["db_schema"]
    async with controller(module_env) as (_app, api):
        old = (await _submit(api, key="nightly-2026-01-01")).json()["run_id"]
        recent = (await _submit(api)).json()["run_id"]
        waiting = (await _submit(api)).json()["run_id"]  # never started: not finished
        for run_id in (old, recent):
            await finish_run(db, run_id, schema=schema)
        await _age(db, old, days=31)
        await _age(db, recent, days=29)
        async with db() as session, session.begin():  # waiting for 40 days, still PENDING
            await session.execute(
                text("UPDATE workflow_runs SET created_at = now() - interval '40 days' "
                     "WHERE id = :id"),
                {"id": uuid.UUID(waiting)},
            )  # fmt: skip
        # The relay publishes events as they commit; one of the old run's is still on its way.
        async with db() as session, session.begin():
            await session.execute(text("UPDATE event_outbox SET published_at = now()"))
            await session.execute(
                text(
                    "UPDATE event_outbox SET published_at = NULL WHERE id = "
                    "(SELECT max(id) FROM event_outbox WHERE run_id = :id)"
                ),
                {"id": uuid.UUID(old)},
            )

        loop = RetentionLoop(controller_settings(module_env, retention_days=30), db)
        assert await loop.purge() == 1

        assert (await api.get(f"/workflows/{old}", headers=AUTH)).status_code == 404
        for run_id in (recent, waiting):
            assert (await api.get(f"/workflows/{run_id}", headers=AUTH)).status_code == 200
        gone = {"id": uuid.UUID(old)}
        assert await _rows(db, "SELECT count(*) FROM step_runs WHERE run_id = :id", **gone) == 0
        left = "SELECT count(*) FROM event_outbox WHERE run_id = :id"
        assert await _rows(db, left + " AND published_at IS NOT NULL", **gone) == 0
        assert await _rows(db, left + " AND published_at IS NULL", **gone) == 1  # not lost
        kept = {"id": uuid.UUID(recent)}
        assert await _rows(db, "SELECT count(*) FROM step_runs WHERE run_id = :id", **kept) == 1
        assert await _rows(db, left, **kept) > 0
        # The key went with its run: the same request now starts a new one.
        again = await _submit(api, key="nightly-2026-01-01")
        assert again.status_code == 202 and again.json()["run_id"] != old
        assert await loop.purge() == 0  # nothing else is past retention


async def test_retention_zero_keeps_every_run(module_env: dict, db: async_sessionmaker) -> None:
    async with controller(module_env) as (_app, api):
        run_id = (await _submit(api)).json()["run_id"]
        await finish_run(db, run_id, schema=module_env["db_schema"])
        await _age(db, run_id, days=3650)
        loop = RetentionLoop(controller_settings(module_env, retention_days=0), db)
        assert await loop.purge() == 0
        assert (await api.get(f"/workflows/{run_id}", headers=AUTH)).status_code == 200


def test_the_platform_wide_variable_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_RETENTION_DAYS", "7")
    assert controller_settings({}).retention_days == 7.0
