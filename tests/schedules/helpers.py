"""Helpers for schedule and policy tests: a private schema, a settable clock, finishing runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.session import asyncpg_dsn
from shared.state.runs import start_runs
from shared.state.steps import AttemptResult, claim_steps, record_results
from tests.conftest import DATABASE_URL, asgi_client, fresh_schema, reads_with

API_KEY = "k-sched"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def private_schema(common_env: dict) -> Iterator[dict]:
    """Settings kwargs on a fresh migrated schema, for a fixture that cannot take `module_env`
    (tests/conftest.py), which is this with the schema's own merge target."""
    for schema in fresh_schema():
        yield {**common_env, "db_schema": schema}


async def truncate(env: dict) -> None:
    """Empty the private schema's tables between tests (the migrations stay)."""
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        await conn.execute(f'SET search_path TO "{env["db_schema"]}"')
        await conn.execute(
            "TRUNCATE workflow_runs, step_runs, idempotency_records, event_outbox, "
            "schedules, schedule_fires, workflow_definitions CASCADE"
        )
    finally:
        await conn.close()


class Clock:
    """A clock tests move by hand (aware UTC datetimes)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def controller_settings(env: dict, **overrides: Any) -> ControllerSettings:
    """Controller settings for in-process tests: no engine, no loops, no seeds unless asked."""
    values: dict[str, Any] = {
        **env,
        "api_keys": [API_KEY],
        "engine_url": "http://127.0.0.1:9",  # nothing listens: runs stay PENDING
        "start_loops": False,
        "seed_schedules": False,
        "register_builtin_workflows": False,
    }
    values.update(overrides)
    return ControllerSettings(**values)


@asynccontextmanager
async def controller(
    env: dict, clock: Clock | None = None, /, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A controller app on `env` with the lifespan running, its clock replaced by `clock`."""
    app = create_app(controller_settings(env, **overrides))
    if clock is not None:
        app.state.clock = clock
    async with asgi_client(app, **reads_with(API_KEY)) as client:
        yield app, client


def one_step_spec(name: str, kind: str = "standard", **extra: Any) -> dict[str, Any]:
    """A one-step workflow of `kind`; `extra` adds top-level spec fields (inputs, ...)."""
    return {
        "name": name,
        "kind": kind,
        "steps": [{"id": "only", "agent": "data-connector", "action": "noop"}],
        **extra,
    }


async def finish_run(
    sessionmaker: async_sessionmaker,
    run_id: uuid.UUID | str,
    *,
    schema: str,
    error: dict[str, Any] | None = None,
) -> None:
    """Drive an admitted run to its end as an engine would: start it, run its steps.

    With `error` every step fails with it (no retry), so the run ends FAILED.
    """
    run_id = uuid.UUID(str(run_id))
    async with sessionmaker() as session, session.begin():
        assert await start_runs(session, [run_id], schema=schema), "run not startable"
    async with sessionmaker() as session, session.begin():
        claimed = await claim_steps(session, owner="test", limit=100, lease_s=60, schema=schema)
    assert claimed and all(c.run_id == run_id for c in claimed), "claimed other runs' steps"
    results = [
        AttemptResult(
            step=c,
            outcome="failed" if error else "succeeded",
            error=error,
            worker="test",
        )
        for c in claimed
    ]
    async with sessionmaker() as session, session.begin():
        await record_results(session, results, schema=schema)


async def run_row(sessionmaker: async_sessionmaker, run_id: uuid.UUID | str) -> Any:
    """The run's status, reason and admission time straight from the table."""
    async with sessionmaker() as session:
        return (
            await session.execute(
                text(
                    "SELECT status, status_reason, admitted_at, spec, inputs "
                    "FROM workflow_runs WHERE id = :id"
                ),
                {"id": uuid.UUID(str(run_id))},
            )
        ).one()
