"""data-collector: the options `standard` passes through (columns) and the commit of a workflow
that has no cursor or keeps no state. Real PostgreSQL: a source table and the session's
`source_state`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow.parquet as pq
import pytest

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, asgi_client, service_auth

PG = asyncpg_dsn(DATABASE_URL)


@pytest.fixture
async def client(common_env: dict, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(
        **common_env, allowed_roots=[str(tmp_path)], allow_private_hosts=["127.0.0.1"]
    )
    async with asgi_client(create_app(settings)) as c:
        yield c


@pytest.fixture
async def table() -> AsyncIterator[str]:
    schema = f"src_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".items (id int PRIMARY KEY, name text, note text, '
        "updated_at timestamptz NOT NULL)"
    )
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(i, f"n{i}", "x" * i, base + timedelta(minutes=i)) for i in range(1, 21)]
    await conn.copy_records_to_table("items", records=rows, schema_name=schema)
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "options-tests", "X-Step-Id": uuid.uuid4().hex}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


async def test_postgres_reads_only_the_selected_columns(client: httpx.AsyncClient, table: str):
    source = {"kind": "postgres", "url": PG, "db_schema": table, "table": "items"}
    plain = await call(client, "collect", {"source": source, "columns": ["name", "id"]})
    assert plain.status_code == 200, plain.text
    out = plain.json()
    assert list(out["schema"]) == ["name", "id"]
    rows = pq.read_table(out["files"][0]["uri"]).to_pylist()
    assert rows[0] == {"name": "n1", "id": 1} and len(rows) == 20
    # Incremental: the cursor column joins the selection (the window needs it).
    body = {"source": source, "columns": ["name"], "incremental": {"field": "updated_at"}}
    incremental = (await call(client, "collect", body)).json()
    assert list(incremental["schema"]) == ["name", "updated_at", "id"]
    for bad in ([], ["id", "id"]):
        refused = await call(client, "collect", {"source": source, "columns": bad})
        assert refused.status_code == 422 and refused.json()["error"] == "invalid_columns"


async def test_columns_are_refused_where_they_cannot_apply(
    client: httpx.AsyncClient, tmp_path: Path
):
    sources = [
        {"kind": "file", "url": str(tmp_path), "glob": "*.csv"},
        {"kind": "http", "url": "http://127.0.0.1:9/items"},
    ]
    for source in sources:
        refused = await call(client, "collect", {"source": source, "columns": ["id"]})
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["error"] == "unsupported_option" and "columns" in body["message"]
        assert body["retryable"] is False


async def test_commit_without_a_cursor_or_a_key_keeps_what_is_stored(client: httpx.AsyncClient):
    key = f"opts-{uuid.uuid4().hex[:8]}"
    cursor = {"field": "updated_at", "value": "2026-01-01T00:20:00Z", "lag": 0, "seen": ["f"]}
    stored = (await call(client, "commit_state", {"state_key": key, "cursor": cursor})).json()
    assert stored["committed"] is True
    # A collect without incremental returns cursor null: nothing to commit, nothing erased.
    kept = await call(client, "commit_state", {"state_key": key, "cursor": None})
    assert kept.status_code == 200, kept.text
    assert kept.json()["committed"] is False and kept.json()["cursor"] == cursor
    assert (await call(client, "get_state", {"state_key": key})).json()["cursor"] == cursor
    stateless = (await call(client, "commit_state", {"state_key": None, "cursor": cursor})).json()
    assert stateless == {
        "state_key": None,
        "cursor": None,
        "run_id": None,
        "updated_at": None,
        "committed": False,
    }
