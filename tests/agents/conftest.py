"""Fixtures of the agents' tests that more than one module uses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from agents.data_converter.app import create_app as create_converter
from agents.data_merger.app import create_app as create_merger
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, SAMPLES, asgi_client

PLAIN_DB_URL = asyncpg_dsn(DATABASE_URL)
ROWS = 3000


@pytest.fixture
async def collector(common_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    """The data-collector app, allowed to reach the local test database."""
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    async with asgi_client(create_app(settings)) as c:
        yield c


@pytest.fixture
async def converter_merger(
    common_env: dict, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The data-converter and data-merger apps, allowed the samples and the test's folder."""
    settings = AgentSettings(**common_env, allowed_roots=[str(SAMPLES), str(tmp_path)])
    async with (
        asgi_client(create_converter(settings)) as converter,
        asgi_client(create_merger(settings)) as merger,
    ):
        yield converter, merger


@pytest.fixture
async def events() -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    schema = f"arrow_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PLAIN_DB_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    # The columns, plus the kinds read through SQL casts (interval, uuid, jsonb, array).
    await conn.execute(
        f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL,'
        " created_local timestamp, name text, amount numeric(12,2), qty integer, active boolean,"
        " note text, span interval, ref uuid, doc jsonb, tags int[])"
    )
    await conn.execute(
        f'INSERT INTO "{schema}".events SELECT g,'
        " timestamptz '2026-03-29 00:30:00.123456+00' + g * interval '1 minute',"
        " timestamp '2026-01-01' + g * interval '1 second', 'név ' || g || ' \"q\"',"
        " CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 1.37 - 2000)::numeric(12,2) END,"
        " g % 1000 - 500, g % 3 = 0, CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text) END,"
        " g * interval '1.5 second', md5(g::text)::uuid, jsonb_build_object('g', g),"
        f" ARRAY[g, g + 1] FROM generate_series(1, {ROWS}) g"
    )
    try:
        yield schema, conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
