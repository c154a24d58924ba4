"""Migration 0008 on an install at 0007 with data: the definition and the run it had stay as
they were (active; submitter unknown) and the controller serves both; downgrade works too."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
from alembic import command

from shared.db.migrate import alembic_config
from shared.db.session import asyncpg_dsn
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL
from tests.schedules.helpers import AUTH, controller, one_step_spec

RUN_ID = uuid.uuid4()


async def _seed_at_0007(schema: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        spec = json.dumps({**one_step_spec("old_wf"), "version": 1})
        await conn.execute(
            "INSERT INTO workflow_definitions (name, version, kind, spec, spec_hash, source) "
            "VALUES ('old_wf', 1, 'standard', $1::jsonb, 'h', 'api')",
            spec,
        )
        await conn.execute(
            "INSERT INTO workflow_runs (id, workflow_name, workflow_version, kind, spec, inputs, "
            "status, trace_id) VALUES ($1, 'old_wf', 1, 'standard', $2::jsonb, '{}', "
            "'SUCCEEDED', 't')",
            RUN_ID,
            spec,
        )
    finally:
        await conn.close()


async def _columns(schema: str) -> set[tuple[str, str]]:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND column_name IN ('archived_at', 'submitted_by')",
            schema,
        )
    finally:
        await conn.close()
    return {(r["table_name"], r["column_name"]) for r in rows}


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_0008_upgrades_an_existing_0007_schema_keeping_its_rows(common_env: dict) -> None:
    schema = f"m_{uuid.uuid4().hex[:10]}"
    config = alembic_config(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    try:
        await asyncio.to_thread(command.upgrade, config, "0007")
        await _seed_at_0007(schema)
        assert await _columns(schema) == set()
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await _columns(schema) == {
            ("workflow_definitions", "archived_at"),
            ("workflow_runs", "submitted_by"),
        }
        env = {**common_env, "db_schema": schema}
        async with controller(env) as (_, client):
            listed = await client.get("/workflows/definitions", headers=AUTH)
            [old] = listed.json()["items"]
            assert (old["name"], old["archived"], old["steps"]) == ("old_wf", False, 1)
            run = (await client.get(f"/workflows/{RUN_ID}", headers=AUTH)).json()
            assert run["status"] == "SUCCEEDED" and run["submitted_by"] is None
            new = await client.post("/coordinate", json={"workflow": "old_wf"}, headers=AUTH)
            assert new.status_code == 202, new.text
        await asyncio.to_thread(command.downgrade, config, "0007")
        assert await _columns(schema) == set()
        await asyncio.to_thread(command.upgrade, config, "head")
        assert len(await _columns(schema)) == 2
    finally:
        await _drop(schema)
