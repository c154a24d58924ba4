"""The `standard` workflow into each destination, end to end through the running platform: a
PostgreSQL source table loaded into Delta (with scd2 history), PostgreSQL and DuckDB, the loads
read back from the controller, and `maintain_dataset` compacting the Delta table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable

from tests.conftest import target_schema
from tests.e2e.conftest import Platform
from tests.e2e.test_incremental_state import PG_URL, sql
from tests.e2e.test_workflows import run_workflow, step


@pytest.fixture
def source() -> Iterator[str]:
    schema = f"dst_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE SCHEMA {schema}")
    sql(f"CREATE TABLE {schema}.customers (id int PRIMARY KEY, city text)")
    sql(f"INSERT INTO {schema}.customers SELECT i, 'city-' || i FROM generate_series(1, 50) i")
    try:
        yield schema
    finally:
        sql(f"DROP SCHEMA {schema} CASCADE")


def _inputs(schema: str, dataset: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "postgres", "url": PG_URL, "db_schema": schema, "table": "customers"},
        "dataset": dataset,
        "primary_key": ["id"],
        "state_key": None,  # every run reads the whole table: a full extract
        **extra,
    }


def test_standard_loads_into_each_destination_and_delta_keeps_history(
    platform: Platform, source: str
) -> None:
    name = f"cust_{uuid.uuid4().hex[:6]}"
    history = _inputs(source, name, merge_strategy="scd2")
    first = run_workflow(platform, "standard", history)
    assert first["status"] == "SUCCEEDED", first
    sql(f"UPDATE {source}.customers SET city = 'moved' WHERE id = 7")
    sql(f"DELETE FROM {source}.customers WHERE id = 9")
    second = run_workflow(platform, "standard", history)
    merged = step(second, "merge")["output"]
    assert merged["target"] == "delta"
    assert (merged["updated"], merged["deleted"], merged["unchanged"]) == (1, 1, 48)
    table = DeltaTable(merged["uri"]).to_pyarrow_table().to_pylist()
    versions = sorted((r["city"], r["_is_current"]) for r in table if r["id"] in (7, 9))
    assert versions == [("city-7", False), ("city-9", False), ("moved", True)]

    pg_table = f"cust_pg_{uuid.uuid4().hex[:6]}"
    into_pg = _inputs(source, f"{name}_pg", destination={"kind": "postgres", "table": pg_table})
    assert run_workflow(platform, "standard", into_pg)["status"] == "SUCCEEDED"
    rows = sql(f'SELECT id, city FROM "{target_schema(platform.env["DB_SCHEMA"])}"."{pg_table}"')
    assert len(rows) == 49 and {r["id"]: r["city"] for r in rows}[7] == "moved"

    into_duckdb = _inputs(source, f"{name}_duck", destination={"kind": "duckdb"})
    loaded = run_workflow(platform, "standard", into_duckdb)
    assert loaded["status"] == "SUCCEEDED", loaded
    path = platform.data_root / "duckdb" / f"{name}_duck.duckdb"
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.sql(f"SELECT count(*) FROM {name}_duck").fetchall() == [(49,)]

    with platform.api() as api:
        loads = api.get(f"/datasets/{name}/loads").json()["loads"]
        assert [load["run_id"] for load in loads] == [second["run_id"], first["run_id"]]
        assert loads[0]["strategy"] == "scd2" and loads[0]["deleted"] == 1
        refused = api.post(
            "/coordinate",
            json={"workflow": "standard", "inputs": {**history, "primary_key": []}},
        )
        assert refused.status_code == 422 and "inputs.primary_key" in refused.text


def test_maintain_dataset_compacts_a_delta_table(platform: Platform, source: str) -> None:
    name = f"cust_{uuid.uuid4().hex[:6]}"
    appends = _inputs(source, name, write_disposition="append", primary_key=[])
    for round_ in range(3):
        # Each round's rows differ: a batch identical to one loaded before is a replay.
        sql(f"UPDATE {source}.customers SET city = 'round-{round_}'")
        assert run_workflow(platform, "standard", appends)["status"] == "SUCCEEDED"
    uri = str(platform.data_root / "datasets" / name)
    assert len(DeltaTable(uri).file_uris()) == 3
    run = run_workflow(platform, "maintain_dataset", {"dataset": name})
    assert run["status"] == "SUCCEEDED", run
    out = step(run, "maintain")["output"]
    assert out["optimize"]["files_removed"] == 3 and out["optimize"]["files_added"] == 1
    table = DeltaTable(uri)
    assert len(table.file_uris()) == 1 and table.count() == 150
