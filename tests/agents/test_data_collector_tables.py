"""data-collector's whole-schema source (`plan_tables`, dlt's sql_database): one item per table
with the catalog's primary key, refusals that name the table, and unreadable tables failed or
listed as skipped, never left out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from agents.base.settings import AgentSettings
from agents.data_connector.app import create_app as create_connector
from tests.agents.conftest import PLAIN_DB_URL
from tests.agents.test_data_collector_arrow import collect, collected
from tests.conftest import asgi_client, service_auth


async def plan(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "tables-tests", "X-Step-Id": uuid.uuid4().hex}
    return await client.post("/api/v1/plan_tables", json=body, headers=headers)


@pytest.fixture
async def shop() -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """orders (key id), order_lines (composite key), audit (no key), internal (not listed)."""
    schema = f"shop_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PLAIN_DB_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY, total numeric(10,2), '
        "updated_at timestamptz NOT NULL)"
    )
    await conn.execute(
        f'CREATE TABLE "{schema}".order_lines (line_no int, order_id int, sku text, '
        "updated_at timestamptz, PRIMARY KEY (order_id, line_no))"
    )
    await conn.execute(f'CREATE TABLE "{schema}".audit (seq bigint, message text)')
    await conn.execute(f'CREATE TABLE "{schema}".internal (id int PRIMARY KEY)')
    await conn.execute(
        f'CREATE VIEW "{schema}".order_totals AS SELECT id, total FROM "{schema}".orders'
    )
    await conn.execute(f"INSERT INTO \"{schema}\".audit VALUES (1, 'a'), (2, 'b')")
    try:
        yield schema, conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def source(schema: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": schema, **extra}


async def test_every_table_of_a_schema_is_planned_with_its_catalog_key(
    collector: httpx.AsyncClient, shop: tuple[str, asyncpg.Connection]
):
    schema, _ = shop
    body = {
        "source": source(schema),
        "dataset_prefix": "s_",
        "state_key": "shop",
        "write_disposition": "append",
        "incremental": None,
    }
    resp = await plan(collector, body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    # Base tables only (the view is not a table of the schema), in name order.
    assert [t["table"] for t in out["tables"]] == ["audit", "internal", "order_lines", "orders"]
    by_name = {t["table"]: t for t in out["tables"]}
    assert by_name["order_lines"]["primary_key"] == ["order_id", "line_no"]  # key order
    assert by_name["order_lines"]["primary_key_from"] == "catalog"
    assert (by_name["audit"]["primary_key"], by_name["audit"]["primary_key_from"]) == ([], None)
    lines = by_name["order_lines"]
    assert lines["source"] == {**source(schema), "table": "order_lines", "params": {},
                               "connect_timeout_s": 10.0}  # fmt: skip
    assert (lines["dataset"], lines["state_key"]) == ("s_order_lines", "shop.order_lines")
    assert out["skipped"] == [] and out["count"] == 4


async def test_a_list_with_per_table_hints_and_the_refusals_name_the_table(
    collector: httpx.AsyncClient, shop: tuple[str, asyncpg.Connection]
):
    schema, _ = shop
    tables = ["orders", "order_lines", "audit"]
    body: dict[str, Any] = {
        "source": source(schema, tables=tables),
        "dataset_prefix": "s_",
        "state_key": "shop",
        "incremental": {"field": "updated_at"},
    }
    # merge (the default) of a table without a primary key: refused, naming it.
    refused = await plan(collector, body)
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["error"] == "no_primary_key" and not error["retryable"]
    assert f"table {schema}.audit has no primary key" in error["message"]

    body["hints"] = {"audit": {"write_disposition": "append", "incremental": {"field": "seq"}}}
    resp = await plan(collector, body)
    assert resp.status_code == 200, resp.text
    by_name = {t["table"]: t for t in resp.json()["tables"]}
    assert list(by_name) == tables  # the list's order; `internal` is not taken
    assert by_name["orders"]["write_disposition"] == "merge"
    # The default cursor dedups the boundary by each table's own key.
    assert by_name["order_lines"]["incremental"]["key"] == ["order_id", "line_no"]
    assert by_name["audit"]["incremental"]["field"] == "seq"
    assert (by_name["audit"]["write_disposition"], by_name["audit"]["primary_key"]) == (
        "append",
        [],
    )

    # A key from the hints makes the keyless table mergeable; `incremental: null` reads it whole.
    keyed = {**body, "hints": {"audit": {"primary_key": ["seq"], "incremental": None}}}
    audit = next(
        t for t in (await plan(collector, keyed)).json()["tables"] if t["table"] == "audit"
    )
    assert (audit["primary_key"], audit["primary_key_from"], audit["incremental"]) == (
        ["seq"],
        "hints",
        None,
    )

    for changed, code, named in (
        ({"hints": {}}, "no_primary_key", "audit"),  # and no hint: still refused
        ({"hints": {"audit": {"write_disposition": "append"}}}, "unknown_column", "audit"),
        ({"hints": {"internal": {"primary_key": ["id"]}}}, "invalid_table", "'internal'"),
        ({"hints": {"orders": {"primary_key": ["nope"]}}}, "invalid_table", "'nope'"),
        ({"source": source(schema, tables=["orders", "gone"])}, "table_not_found", "gone"),
        ({"source": source(schema, tables=["order_totals"])}, "table_not_found", "order_totals"),
        ({"destination": {"kind": "postgres", "table": "one"}}, "invalid_destination", "table"),
    ):
        refused = await plan(collector, {**body, **changed})
        assert refused.status_code == 422, (changed, refused.text)
        assert refused.json()["error"] == code and named in refused.json()["message"], changed

    # The single-table collect refuses a whole-schema source rather than reading one table.
    whole = await collect(collector, {"source": source(schema, tables=tables)})
    assert whole.status_code == 422 and "plan_tables" in whole.json()["message"]


@pytest.fixture
async def reader(shop: tuple[str, asyncpg.Connection]) -> AsyncIterator[str]:
    """A login role that may read orders and audit but not order_lines."""
    schema, conn = shop
    role = f"reader_{uuid.uuid4().hex[:8]}"
    await conn.execute(f'CREATE ROLE "{role}" LOGIN')
    await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
    await conn.execute(f'GRANT SELECT ON "{schema}".orders, "{schema}".audit TO "{role}"')
    try:
        yield make_url(PLAIN_DB_URL).set(username=role).render_as_string(hide_password=False)
    finally:
        await conn.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}"')
        await conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM "{role}"')
        await conn.execute(f'DROP ROLE "{role}"')


async def test_a_table_the_role_cannot_read_fails_the_plan_or_is_listed_as_skipped(
    collector: httpx.AsyncClient, shop: tuple[str, asyncpg.Connection], reader: str
):
    schema, conn = shop
    tables = ["orders", "order_lines", "audit"]
    body: dict[str, Any] = {
        "source": {**source(schema, tables=tables), "url": reader},
        "write_disposition": "append",
    }
    refused = await plan(collector, body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "read_refused"
    assert f"{schema}.order_lines" in refused.json()["message"]

    resp = await plan(collector, {**body, "on_unreadable": "skip"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [t["table"] for t in out["tables"]] == ["orders", "audit"]
    assert [s["table"] for s in out["skipped"]] == ["order_lines"]
    assert "permission denied" in out["skipped"][0]["reason"]
    # Each planned item is a source the single-table collect reads as the plan says.
    audit = next(t for t in out["tables"] if t["table"] == "audit")
    read = await collect(collector, {"source": audit["source"], "label": audit})
    assert read.status_code == 200, read.text
    assert read.json()["label"] == audit
    assert sorted(collected(read.json())["seq"].to_pylist()) == [1, 2]
    # A table that became unreadable after the plan fails its collect, naming the table.
    lines = {**audit["source"], "table": "order_lines"}
    failed = await collect(collector, {"source": lines})
    assert failed.status_code == 422 and "order_lines" in failed.json()["message"]
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".audit') == 2


async def test_the_connector_describes_the_listed_tables_and_names_the_missing(
    common_env: dict, shop: tuple[str, asyncpg.Connection]
):
    schema, _ = shop
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    body = {"source": source(schema, tables=["order_lines", "audit", "gone"])}
    async with asgi_client(create_connector(settings)) as connector:
        resp = await connector.post("/api/v1/describe", json=body, headers=service_auth())
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert sorted(t["name"] for t in out["tables"]) == ["audit", "order_lines"]
    assert out["missing"] == ["gone"]
    keys = {t["name"]: t["primary_key"] for t in out["tables"]}
    assert keys == {"audit": [], "order_lines": ["order_id", "line_no"]}
