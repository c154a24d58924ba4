"""data-merger over HTTP: the `test` workflow, dispositions, idempotency, PostgreSQL, quality."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import polars as pl
import pyarrow.parquet as pq

from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, SAMPLES, service_auth

TEST_SAMPLES = SAMPLES / "test"


async def call(
    client: httpx.AsyncClient, action: str, body: dict[str, Any], step: str = "s"
) -> Any:
    headers = {**service_auth(), "X-Run-Id": "merge-tests", "X-Step-Id": step}
    if action == "merge" and "target" not in body:
        # The earlier Parquet format, whose files and checksum these tests read; Delta tables
        # have tests of their own (test_destination_delta.py, test_merger_loads.py).
        body = {"destination": {"kind": "parquet"}, **body}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


def dataset_name() -> str:
    return f"ds_{uuid.uuid4().hex[:8]}"


def batch(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> str:
    path = tmp_path / f"{name}.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return str(path)


async def test_the_test_workflow_merges_140_orders_and_a_rerun_changes_nothing(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    converter, merger = converter_merger
    csvs, remote = await asyncio.gather(
        call(
            converter,
            "convert",
            {
                "files": [
                    str(TEST_SAMPLES / "orders_2026_11_a.csv"),
                    str(TEST_SAMPLES / "orders_2026_11_b.csv"),
                ]
            },
            "convert_files",
        ),
        call(
            converter,
            "convert",
            {"files": [str(TEST_SAMPLES / "remote" / "orders_api.json")]},
            "convert_api",
        ),
    )
    assert csvs.status_code == remote.status_code == 200, (csvs.text, remote.text)
    name = dataset_name()
    # The template engine passes whole upstream outputs: manifests inside nested lists.
    body = {
        "batches": [csvs.json()["files"], remote.json()],
        "dataset": name,
        "write_disposition": "merge",
        "primary_key": ["order_id"],
    }
    first = await call(merger, "merge", body, "merge")
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["rows"] == 140 and result["inserted"] == 140
    assert result["schema"]["created_at"] == "timestamp[us, UTC]"
    frame = pl.read_parquet([f["uri"] for f in result["files"]])
    assert frame["order_id"].to_list() == list(range(1, 141))
    # 111..120 come in both the CSV and the API batch: the later batch wins.
    api = json.loads((TEST_SAMPLES / "remote" / "orders_api.json").read_text())
    api_115 = next(r for r in api if r["order_id"] == 115)
    assert frame.filter(pl.col("order_id") == 115)["email"].item() == api_115["email"]

    again = await call(merger, "merge", body, "merge-again")
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["checksum"] == result["checksum"] and again.json()["version"] == 1

    # The same rows merged again as a different batch: nothing changes, nothing is inserted.
    repeat = await call(merger, "merge", {**body, "batches": [remote.json()]}, "merge-repeat")
    assert repeat.json()["inserted"] == 0 and repeat.json()["updated"] == 0
    assert repeat.json()["unchanged"] == 30 and repeat.json()["checksum"] == result["checksum"]


async def test_merge_without_primary_key_is_refused_and_writes_nothing(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    _, merger = converter_merger
    name = dataset_name()
    body = {
        "batches": [batch(tmp_path, "b", [{"id": 1}])],
        "dataset": name,
        "write_disposition": "merge",
    }
    response = await call(merger, "merge", body)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "primary_key"
    assert not (Path(common_env["data_root"]) / "datasets" / name).exists()


async def test_upsert_counts_dedup_sort_and_hard_delete(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, merger = converter_merger
    name = dataset_name()
    base = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    initial = [{"id": i, "v": f"v{i}", "version": 1, "gone": False} for i in range(1, 6)]
    first = await call(merger, "merge", {**base, "batches": [batch(tmp_path, "one", initial)]})
    assert first.json()["inserted"] == 5
    changes = [
        {"id": 2, "v": "new-2", "version": 3, "gone": False},
        {"id": 2, "v": "old-2", "version": 2, "gone": False},  # loses: lower version
        {"id": 3, "v": "v3", "version": 1, "gone": False},  # unchanged
        {"id": 4, "v": "v4", "version": 2, "gone": True},  # deleted
        {"id": 9, "v": "v9", "version": 1, "gone": False},  # inserted
    ]
    body = {
        **base,
        "batches": [batch(tmp_path, "two", changes)],
        "dedup_sort": {"column": "version", "order": "desc"},
        "hard_delete": "gone",
    }
    second = (await call(merger, "merge", body)).json()
    assert (second["inserted"], second["updated"], second["unchanged"], second["deleted"]) == (
        1,
        1,
        1,
        1,
    )
    assert second["rows"] == 5 and second["version"] == 2
    frame = pl.read_parquet([f["uri"] for f in second["files"]]).sort("id")
    assert frame["id"].to_list() == [1, 2, 3, 5, 9]
    assert frame.filter(pl.col("id") == 2)["v"].item() == "new-2"
    assert "gone" not in frame.columns
    # The superseded version's file is gone: the folder read as a whole is the current data.
    assert pq.read_table(second["uri"]).num_rows == 5


async def test_append_and_replace_and_checksum_ignores_row_order(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, merger = converter_merger
    name = dataset_name()
    rows_a = [{"id": 1, "x": "a"}, {"id": 2, "x": "b"}]
    rows_b = [{"id": 3, "x": "c", "extra": 1.5}]
    append = {"dataset": name, "write_disposition": "append"}
    one = (
        await call(merger, "merge", {**append, "batches": [batch(tmp_path, "a", rows_a)]})
    ).json()
    two = (
        await call(merger, "merge", {**append, "batches": [batch(tmp_path, "b", rows_b)]})
    ).json()
    assert (one["rows"], two["rows"], two["inserted"], len(two["files"])) == (2, 3, 1, 2)
    assert two["schema"]["extra"] == "float64"
    # A retried append (same batch, new request) must not duplicate rows.
    retry = (
        await call(merger, "merge", {**append, "batches": [batch(tmp_path, "b", rows_b)]})
    ).json()
    assert retry["replayed"] is True and retry["rows"] == 3

    other = dataset_name()
    shuffled = [rows_b[0] | {}, *reversed(rows_a)]
    replace = {"dataset": other, "write_disposition": "replace"}
    same = (
        await call(merger, "merge", {**replace, "batches": [batch(tmp_path, "c", shuffled)]})
    ).json()
    assert same["rows"] == 3 and same["checksum"] == two["checksum"]
    smaller = (
        await call(merger, "merge", {**replace, "batches": [batch(tmp_path, "d", rows_a)]})
    ).json()
    assert (smaller["rows"], smaller["deleted"], smaller["inserted"]) == (2, 3, 2)
    assert smaller["checksum"] != same["checksum"]


async def test_concurrent_merges_into_one_dataset_are_serialised(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, merger = converter_merger
    name = dataset_name()
    bodies = [
        {
            "dataset": name,
            "write_disposition": "append",
            "batches": [batch(tmp_path, f"p{i}", [{"id": i * 10 + j} for j in range(10)])],
        }
        for i in range(6)
    ]
    responses = await asyncio.gather(
        *(call(merger, "merge", b, f"p{i}") for i, b in enumerate(bodies))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == [1, 2, 3, 4, 5, 6]
    last = max((r.json() for r in responses), key=lambda r: r["version"])
    assert last["rows"] == 60
    assert pl.read_parquet([f["uri"] for f in last["files"]])["id"].n_unique() == 60


async def test_merges_into_a_postgres_table_in_one_transaction(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    _, merger = converter_merger
    table = f"orders_{uuid.uuid4().hex[:6]}"
    target = {"kind": "postgres", "table": table}
    rows = [
        {"id": 1, "name": "a", "tags": ["x"], "deleted": None},
        {"id": 2, "name": "b", "tags": [], "deleted": None},
    ]
    body = {
        "dataset": "orders",
        "write_disposition": "merge",
        "primary_key": ["id"],
        "hard_delete": "deleted",
        "target": target,
    }
    first = await call(merger, "merge", {**body, "batches": [batch(tmp_path, "pg1", rows)]})
    assert first.status_code == 200, first.text
    assert first.json()["inserted"] == 2 and first.json()["rows"] == 2
    update = [
        {"id": 2, "name": "b2", "tags": ["y"], "deleted": None},
        {"id": 1, "name": "a", "tags": ["x"], "deleted": "2026-11-01"},
        {"id": 3, "name": "c", "tags": None, "deleted": None},
    ]
    second = await call(merger, "merge", {**body, "batches": [batch(tmp_path, "pg2", update)]})
    result = second.json()
    assert (result["inserted"], result["updated"], result["deleted"], result["rows"]) == (
        1,
        1,
        1,
        2,
    )
    again = await call(merger, "merge", {**body, "batches": [batch(tmp_path, "pg2", update)]})
    assert again.json() == {**result, "replayed": True}

    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        schema = common_env["target_schemas"][0]
        stored = await conn.fetch(f'SELECT id, name, tags FROM "{schema}"."{table}" ORDER BY id')
    finally:
        await conn.close()
    assert [(r["id"], r["name"], json.loads(r["tags"]) if r["tags"] else None) for r in stored] == [
        (2, "b2", ["y"]),
        (3, "c", None),
    ]

    refused = await call(
        merger,
        "merge",
        {
            **body,
            "target": {
                "kind": "postgres",
                "table": "workflow_runs",
                "schema": common_env["db_schema"],
            },
            "batches": [batch(tmp_path, "pg3", rows)],
        },
    )
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_target"
    injected = await call(
        merger,
        "merge",
        {
            **body,
            "target": {"kind": "postgres", "table": 'x"; DROP TABLE y; --'},
            "batches": [batch(tmp_path, "pg4", rows)],
        },
    )
    assert injected.status_code == 422 and injected.json()["error"] == "invalid_target"


async def test_postgres_append_and_replace(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    _, merger = converter_merger
    table = f"events_{uuid.uuid4().hex[:6]}"
    body = {"dataset": "events", "target": {"kind": "postgres", "table": table}}
    day_one = batch(tmp_path, "e1", [{"at": "2026-11-01", "n": 1}, {"at": "2026-11-02", "n": 2}])
    day_two = batch(tmp_path, "e2", [{"at": "2026-11-03", "n": 3, "note": "late"}])
    append = {**body, "write_disposition": "append"}
    first = (await call(merger, "merge", {**append, "batches": [day_one]})).json()
    second = (await call(merger, "merge", {**append, "batches": [day_two]})).json()
    retried = (await call(merger, "merge", {**append, "batches": [day_two]})).json()
    assert (first["rows"], second["rows"], second["inserted"]) == (2, 3, 1)
    assert retried["replayed"] is True and retried["rows"] == 3
    replaced = (
        await call(merger, "merge", {**body, "write_disposition": "replace", "batches": [day_two]})
    ).json()
    assert (replaced["rows"], replaced["deleted"], replaced["inserted"]) == (1, 3, 1)
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        rows = await conn.fetch(
            f'SELECT n, note FROM "{common_env["target_schemas"][0]}"."{table}"'
        )
    finally:
        await conn.close()
    assert [(r["n"], r["note"]) for r in rows] == [(3, "late")]


async def test_quality_check_passes_and_fails_with_results(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, merger = converter_merger
    name = dataset_name()
    rows: list[dict[str, Any]] = [
        {"id": 1, "amount": 5.0, "email": "a@x"},
        {"id": 2, "amount": 50.0, "email": None},
    ]
    merged = await call(
        merger,
        "merge",
        {"dataset": name, "write_disposition": "replace", "batches": [batch(tmp_path, "q", rows)]},
    )
    assert merged.status_code == 200
    good = {
        "row_count_min": 2,
        "not_null": ["id"],
        "unique": ["id"],
        "ranges": {"amount": {"min": 0, "max": 100}},
    }
    passed = await call(merger, "quality_check", {"dataset": name, "checks": good})
    assert passed.status_code == 200, passed.text
    assert passed.json()["passed"] is True and len(passed.json()["results"]) == 4

    bad = {
        "row_count_min": 3,
        "not_null": ["email"],
        "unique": [["id", "amount"]],
        "ranges": {"amount": {"max": 10}},
    }
    # The whole merge output as `files`, as a template would pass it: its files are checked.
    failed = await call(merger, "quality_check", {"files": merged.json(), "checks": bad})
    assert failed.status_code == 422
    error = failed.json()
    assert error["error"] == "quality_failed" and error["retryable"] is False
    outcome = {(r["check"], str(r.get("column"))): r["passed"] for r in error["details"]["results"]}
    assert outcome == {
        ("row_count_min", "None"): False,
        ("not_null", "email"): False,
        ("unique", "['id', 'amount']"): True,
        ("range", "amount"): False,
    }
    missing = await call(merger, "quality_check", {"dataset": "nope-" + name, "checks": good})
    assert missing.json()["error"] == "dataset_not_found"


async def test_an_empty_micro_batch_converts_and_merges_nothing(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    converter, merger = converter_merger
    name = dataset_name()
    first = batch(tmp_path, "first", [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    merged = (await call(merger, "merge", {**body, "batches": [first]}, step="m1")).json()
    converted = await call(converter, "convert", {"files": []}, step="c2")
    assert converted.status_code == 200
    assert converted.json() == {"files": [], "rows": 0, "rejected_rows": 0, "schema": {}}
    for disposition in ("merge", "append", "replace"):
        again = await call(
            merger,
            "merge",
            {**body, "write_disposition": disposition, "batches": converted.json()["files"]},
            step=f"m-{disposition}",
        )
        assert again.status_code == 200, again.text
        result = again.json()
        assert result["empty_batch"] is True and result["inserted"] == 0
        assert (result["rows"], result["version"]) == (2, merged["version"])
        assert result["checksum"] == merged["checksum"]
    assert pl.read_parquet(merged["files"][0]["uri"]).height == 2
