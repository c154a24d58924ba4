"""A PostgreSQL merge can never write into the platform's own tables.

Hardening finding 1: a merge targeting the table `source_state` replaced another source's
cursor, and `write_disposition: replace` into `schedules` deleted the four seed schedules. The
deny-list of platform tables was built from whatever models the merger process had imported.
Now the platform lives in a schema of its own and a merge writes only to allowlisted schemas.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import polars as pl
import pytest

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app as create_collector
from agents.data_merger.app import create_app as create_merger
from shared.db.migrate import upgrade
from shared.db.session import asyncpg_dsn
from shared.settings import PLATFORM_SCHEMA, CommonSettings
from tests.conftest import DATABASE_URL, asgi_client, service_auth
from tests.schedules.helpers import controller


async def _platform_rows(schema: str) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        names = [r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".schedules')]
        state = [
            dict(r) for r in await conn.fetch(f'SELECT key, value FROM "{schema}".source_state')
        ]
    finally:
        await conn.close()
    return {"schedules": sorted(names), "source_state": state}


async def test_no_merge_reaches_the_platform_tables(module_env: dict, tmp_path: Path) -> None:
    async with controller(module_env, seed_schedules=True):
        pass  # the four seed schedules now exist
    settings = AgentSettings(**module_env, allowed_roots=[str(tmp_path)])
    headers = {**service_auth(), "X-Run-Id": "r1", "X-Step-Id": "merge"}
    async with asgi_client(create_collector(settings)) as collector:
        committed = await collector.post(
            "/api/v1/commit_state",
            json={"state_key": "orders-api", "cursor": {"field": "id", "value": 41}},
            headers=headers,
        )
        assert committed.status_code == 200, committed.text
    before = await _platform_rows(module_env["db_schema"])
    assert len(before["schedules"]) == 4 and len(before["source_state"]) == 1

    batch = tmp_path / "b.parquet"
    pl.DataFrame({"key": ["orders-api"], "value": ['{"field": "id", "value": 0}']}).write_parquet(
        batch
    )
    attempts: list[tuple[dict[str, Any], str]] = [
        ({"kind": "postgres", "table": "schedules", "schema": module_env["db_schema"]}, "replace"),
        (
            {"kind": "postgres", "table": "source_state", "schema": module_env["db_schema"]},
            "replace",
        ),
        ({"kind": "postgres", "table": "schedules", "schema": PLATFORM_SCHEMA}, "replace"),
        ({"kind": "postgres", "table": "schedules", "schema": "public"}, "replace"),
        ({"kind": "postgres", "table": "pg_class", "schema": "pg_catalog"}, "append"),
        ({"kind": "postgres", "table": "x", "schema": 'a"; DROP SCHEMA b; --'}, "append"),
    ]
    async with asgi_client(create_merger(settings)) as merger:
        for i, (target, disposition) in enumerate(attempts):
            response = await merger.post(
                "/api/v1/merge",
                json={
                    "batches": [str(batch)],
                    "dataset": "hijack",
                    "write_disposition": disposition,
                    "target": target,
                },
                headers={**headers, "Idempotency-Key": f"hijack-{i}"},
            )
            assert response.status_code == 422, (target, response.text)
            body = response.json()
            assert body["error"] == "invalid_target"
            assert "AGENT_TARGET_SCHEMAS" in body["message"]

        # With no schema named, the table of that name is the user's own, in the target schema.
        own = await merger.post(
            "/api/v1/merge",
            json={
                "batches": [str(batch)],
                "dataset": "hijack",
                "write_disposition": "replace",
                "target": {"kind": "postgres", "table": "source_state"},
            },
            headers={**headers, "Idempotency-Key": "own-table"},
        )
        assert own.status_code == 200, own.text
        assert own.json()["table"] == f"{module_env['target_schemas'][0]}.source_state"
    assert await _platform_rows(module_env["db_schema"]) == before


def test_an_agent_refuses_to_start_with_the_platform_schema_as_a_target() -> None:
    with pytest.raises(ValueError, match="platform schema"):
        AgentSettings(db_schema="my_platform", target_schemas=["ingest", "my_platform"])


async def test_migrations_keep_the_platform_out_of_public() -> None:
    """A fresh database gets every platform table in the platform schema, none in public."""
    database = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = DATABASE_URL.rsplit("/", 1)[0] + f"/{database}"
    try:
        await asyncio.to_thread(upgrade, CommonSettings(database_url=url))
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            tables = await conn.fetch(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
    schemas = {r["schemaname"] for r in tables}
    assert schemas == {PLATFORM_SCHEMA}, schemas
    assert {"workflow_runs", "schedules", "source_state"} <= {r["tablename"] for r in tables}


async def test_an_install_in_public_moves_into_the_platform_schema_with_its_rows() -> None:
    """Upgrading an install made when the platform lived in `public` keeps every run."""
    database = f"old_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = DATABASE_URL.rsplit("/", 1)[0] + f"/{database}"
    try:
        # how it used to be
        await asyncio.to_thread(upgrade, CommonSettings(database_url=url, db_schema="public"))
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(
                "INSERT INTO public.idempotency_records (scope, key, request_hash, resource_id) "
                "VALUES ('coordinate', 'kept', 'h', 'r')"
            )
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, CommonSettings(database_url=url))
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            kept = await conn.fetchval(f"SELECT key FROM {PLATFORM_SCHEMA}.idempotency_records")
            left = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
    assert kept == "kept" and left == 0
