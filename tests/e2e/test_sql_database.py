"""`sql_database`, end to end: a real PostgreSQL schema loaded table by table into datasets of
their own by the running platform, each table with its own key and its own cursor.

A merge of a table without a key is refused before anything is read, naming the table; with a
hint it loads (append); a second run after changes loads only what changed, table by table; a
third finds nothing and writes no version.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.datasets import merged_rows
from tests.e2e.conftest import Platform
from tests.e2e.test_incremental_state import PG_URL, sql

T0 = datetime(2026, 2, 1, tzinfo=UTC)
LISTED = ["orders", "order_lines", "audit"]  # `internal` is in the schema, not in the list


@pytest.fixture
def shop() -> Iterator[str]:
    schema = f"sqldb_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE SCHEMA {schema}")
    sql(
        f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, total numeric(10,2), "
        "updated_at timestamptz NOT NULL)"
    )
    sql(
        f"CREATE TABLE {schema}.order_lines (order_id int, line_no int, sku text, "
        "changed_at timestamptz NOT NULL, PRIMARY KEY (order_id, line_no))"
    )
    sql(f"CREATE TABLE {schema}.audit (seq bigint NOT NULL, message text)")
    sql(f"CREATE TABLE {schema}.internal (id int PRIMARY KEY)")
    sql(
        f"INSERT INTO {schema}.orders SELECT i, i * 10.5, "
        "$1::timestamptz + i * interval '1 minute' FROM generate_series(1, 5) i",
        T0,
    )
    # Two lines share line_no 1 across orders: only the composite key tells them apart.
    sql(
        f"INSERT INTO {schema}.order_lines SELECT o, l, 'sku-' || o || '-' || l, $1::timestamptz "
        "FROM generate_series(1, 3) o, generate_series(1, 2) l",
        T0,
    )
    sql(f"INSERT INTO {schema}.audit VALUES (1, 'created'), (2, 'paid'), (3, 'shipped')")
    sql(f"INSERT INTO {schema}.internal VALUES (1), (2)")
    try:
        yield schema
    finally:
        sql(f"DROP SCHEMA {schema} CASCADE")


def submit(platform: Platform, inputs: dict[str, Any]) -> dict[str, Any]:
    with platform.api() as api:
        response = api.post("/coordinate", json={"workflow": "sql_database", "inputs": inputs})
        assert response.status_code == 202, response.text
    return platform.wait_for_run(response.json()["run_id"], timeout_s=180)


def errors(run: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(s["step_id"], s["error"]) for s in run["steps"] if s["error"]]


def step(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["steps"] if s["step_id"] == step_id)
    return found


def by_dataset(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["dataset"]: m for m in step(run, "merge")["output"]}


def by_table(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["label"]["table"]: c for c in step(run, "collect")["output"]}


def rows(merged: dict[str, Any], *columns: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r[c] for c in columns) for r in merged_rows(merged))


def source_rows(schema: str, table: str, *columns: str) -> list[tuple[Any, ...]]:
    found = sql(f"SELECT {', '.join(columns)} FROM {schema}.{table}")
    return sorted(tuple(r) for r in found)


def test_a_schema_loads_table_by_table_each_with_its_key_and_cursor(
    platform: Platform, shop: str
) -> None:
    schema = shop
    prefix = f"{schema}_"
    inputs: dict[str, Any] = {
        "source": {"kind": "postgres", "url": PG_URL, "db_schema": schema, "tables": LISTED},
        "dataset_prefix": prefix,
        "incremental": {"field": "updated_at"},
        "hints": {"order_lines": {"incremental": {"field": "changed_at"}}},
    }
    # merge (the default) of `audit`, which has no primary key: refused before any read.
    refused = submit(platform, inputs)
    assert refused["status"] == "FAILED", refused
    plan = step(refused, "plan")
    assert plan["status"] == "FAILED"
    assert f"table {schema}.audit has no primary key" in str(plan["error"]), plan["error"]
    assert step(refused, "collect")["status"] != "SUCCEEDED"
    assert not (platform.data_root / "datasets" / f"{prefix}orders").exists()

    inputs["hints"]["audit"] = {"write_disposition": "append", "incremental": {"field": "seq"}}
    first = submit(platform, inputs)
    assert first["status"] == "SUCCEEDED", errors(first)
    assert step(first, "collect")["map_items"] == {"SUCCEEDED": 3}
    planned = {t["table"]: t for t in step(first, "plan")["output"]["tables"]}
    assert list(planned) == LISTED
    assert planned["order_lines"]["primary_key"] == ["order_id", "line_no"]
    collected = by_table(first)
    assert {t: c["rows"] for t, c in collected.items()} == {
        "orders": 5,
        "order_lines": 6,
        "audit": 3,
    }
    merged = by_dataset(first)
    assert sorted(merged) == sorted(prefix + t for t in LISTED)  # no dataset for `internal`
    assert not (platform.data_root / "datasets" / f"{prefix}internal").exists()
    orders, lines, audit = (merged[prefix + t] for t in LISTED)
    assert orders["primary_key"] == ["id"] and orders["inserted"] == 5
    assert lines["primary_key"] == ["order_id", "line_no"] and lines["inserted"] == 6
    assert audit["write_disposition"] == "append" and audit["rows"] == 3
    assert rows(orders, "id", "total", "updated_at") == source_rows(
        schema, "orders", "id", "total", "updated_at"
    )
    assert rows(orders, "id", "total")[0] == (1, Decimal("10.50"))
    assert rows(lines, "order_id", "line_no", "sku") == source_rows(
        schema, "order_lines", "order_id", "line_no", "sku"
    )
    assert rows(audit, "seq", "message") == [(1, "created"), (2, "paid"), (3, "shipped")]
    # Each table's cursor is its own, under <state_key>.<table> (state_key: the prefix).
    with platform.api() as api:
        cursors = {t: api.get(f"/sources/{prefix}.{t}/state").json()["cursor"] for t in LISTED}
    assert {t: c["field"] for t, c in cursors.items()} == {
        "orders": "updated_at",
        "order_lines": "changed_at",
        "audit": "seq",
    }
    assert cursors["audit"]["value"] == 3

    # Changes in every table; each run-2 collect reads only what its own cursor has not seen.
    later = T0 + timedelta(hours=1)
    sql(f"UPDATE {schema}.orders SET total = 99.99, updated_at = $1 WHERE id = 2", later)
    sql(f"INSERT INTO {schema}.orders VALUES (6, 60, $1)", later)
    sql(f"INSERT INTO {schema}.order_lines VALUES (3, 3, 'sku-3-3', $1)", later)
    sql(f"INSERT INTO {schema}.audit VALUES (4, 'refunded')")
    sql(f"INSERT INTO {schema}.internal VALUES (3)")
    second = submit(platform, inputs)
    assert second["status"] == "SUCCEEDED", errors(second)
    collected = by_table(second)
    assert {t: c["rows"] for t, c in collected.items()} == {
        "orders": 2,
        "order_lines": 1,
        "audit": 1,
    }
    assert {c["cursor_from"] for c in collected.values()} == {"state"}
    merged = by_dataset(second)
    orders, lines, audit = (merged[prefix + t] for t in LISTED)
    assert (orders["inserted"], orders["updated"], orders["rows"]) == (1, 1, 6)
    assert (lines["inserted"], lines["updated"], lines["rows"]) == (1, 0, 7)
    assert audit["rows"] == 4  # appended once: seq 1-3 are behind the cursor
    assert rows(orders, "id", "total", "updated_at") == source_rows(
        schema, "orders", "id", "total", "updated_at"
    )
    assert rows(lines, "order_id", "line_no", "sku") == source_rows(
        schema, "order_lines", "order_id", "line_no", "sku"
    )
    assert rows(audit, "seq", "message") == source_rows(schema, "audit", "seq", "message")

    # Nothing changed: every table reads nothing and keeps its version.
    third = submit(platform, inputs)
    assert third["status"] == "SUCCEEDED", errors(third)
    assert {c["rows"] for c in by_table(third).values()} == {0}
    idle = by_dataset(third)
    for name, before in merged.items():
        assert (idle[name]["written"], idle[name]["version"]) == (0, before["version"]), name
