"""Nested JSON unnested into child tables (convert's `nested: unnest`) and merged beside the
parent: real NDJSON files, the converter and merger apps over HTTP, real Delta tables and the
real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import httpx
import polars as pl

from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, service_auth

LINKS = ["_row_id", "_parent_id", "_position", "_root_id"]


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "unnest-tests", "X-Step-Id": action}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


def ndjson(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> str:
    path = tmp_path / f"{name}.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def key_id(value: int) -> str:
    """The `_row_id` of the root row with primary key `id` = value (md5 of the key's JSON)."""
    return md5(json.dumps({"id": value}, separators=(",", ":")))


def child_id(parent: str, path: str, position: int) -> str:
    return md5(f"{parent}_{path}_{position}")


def uri_path(uri: str) -> str:
    return uri.removeprefix("file://")


RECORDS: list[dict[str, Any]] = [
    {
        "id": 1,
        "user": {"name": "Ada", "address": {"city": "Paris", "geo": {"lat": 48.85}}},
        "items": [
            {"sku": "a", "qty": 2, "tags": ["red", "big"]},
            {"sku": "b", "qty": 1, "tags": []},
        ],
        "labels": ["x", "y"],
        "args": {},
        "note": None,
    },
    {"id": 2, "user": None, "items": [], "labels": None, "args": {}, "note": None},
    {
        "id": 3,
        "user": {"name": "Ken", "address": None},
        "items": None,
        "labels": ["z"],
        "args": {},
        "note": None,
    },
]


async def test_unnest_gives_flattened_columns_and_exact_child_rows(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    converter, _ = converter_merger
    source = ndjson(tmp_path, "nested", RECORDS)
    body = {
        "files": [source],
        "format": "ndjson",
        "nested": "unnest",
        "max_nesting": 3,
        "primary_key": ["id"],
    }
    response = await call(converter, "convert", body)
    assert response.status_code == 200, response.text
    out = response.json()
    (manifest,) = out["files"]
    assert sorted(manifest["tables"]) == ["items", "items__tags", "labels"]
    assert {p: t["rows"] for p, t in out["tables"].items()} == {
        "items": 2,
        "items__tags": 2,
        "labels": 3,
    }

    root = pl.read_parquet(uri_path(manifest["uri"]))
    ids = {n: key_id(n) for n in (1, 2, 3)}
    # Objects flatten into a__b columns; user.address.geo is level 3 (= max_nesting), kept;
    # the empty object stays its JSON text; a null object gives nulls in all its columns.
    assert root.columns == [
        "id",
        "user__name",
        "user__address__city",
        "user__address__geo__lat",
        "args",
        "note",
        "_row_id",
    ]
    assert root.rows() == [
        (1, "Ada", "Paris", 48.85, "{}", None, ids[1]),
        (2, None, None, None, "{}", None, ids[2]),
        (3, "Ken", None, None, "{}", None, ids[3]),
    ]
    assert manifest["rows"] == 3 and "items" not in manifest["schema"]

    def child(path: str) -> pl.DataFrame:
        return pl.read_parquet(uri_path(manifest["tables"][path]["uri"]))

    items = child("items")
    item_ids = [child_id(ids[1], "items", 0), child_id(ids[1], "items", 1)]
    # A list of records: one row per element; an empty or null list gives none.
    assert items.columns == ["sku", "qty", *LINKS]
    assert items.rows() == [
        ("a", 2, item_ids[0], ids[1], 0, ids[1]),
        ("b", 1, item_ids[1], ids[1], 1, ids[1]),
    ]
    # A list inside a list's records: a grandchild linked to its item, rooted at the record.
    tags = child("items__tags")
    assert tags.columns == ["value", *LINKS]
    assert tags.rows() == [
        ("red", child_id(item_ids[0], "items__tags", 0), item_ids[0], 0, ids[1]),
        ("big", child_id(item_ids[0], "items__tags", 1), item_ids[0], 1, ids[1]),
    ]
    # A list of scalars: a `value` column.
    labels = child("labels")
    assert labels.select("value", "_parent_id", "_position").rows() == [
        ("x", ids[1], 0),
        ("y", ids[1], 1),
        ("z", ids[3], 0),
    ]

    # Beyond max_nesting a value is its JSON text: at 1, user.address (level 2) and the
    # items' tags (level 2) are text, and no grandchild table is made.
    shallow = await call(converter, "convert", {**body, "max_nesting": 1})
    assert shallow.status_code == 200, shallow.text
    (manifest,) = shallow.json()["files"]
    assert sorted(manifest["tables"]) == ["items", "labels"]
    root = pl.read_parquet(uri_path(manifest["uri"]))
    assert root.select("user__name", "user__address").rows() == [
        ("Ada", '{"city":"Paris","geo":{"lat":48.85}}'),
        (None, None),
        ("Ken", None),
    ]
    items = child("items")
    assert items.select("sku", "tags", "_position").rows() == [
        ("a", '["red","big"]', 0),
        ("b", "[]", 1),
    ]
    # At 0 nothing is unnested: every nested field is JSON text in the root table.
    flat = await call(converter, "convert", {**body, "max_nesting": 0})
    (manifest,) = flat.json()["files"]
    assert manifest["tables"] == {}
    root = pl.read_parquet(uri_path(manifest["uri"]))
    assert root.row(1, named=True)["items"] == "[]"
    assert json.loads(root.row(0, named=True)["items"])[0] == {
        "sku": "a",
        "qty": 2,
        "tags": ["red", "big"],
    }

    # Without a primary key the ids come from content and position; `keep` is unchanged.
    unkeyed = await call(converter, "convert", {**body, "primary_key": None})
    (manifest,) = unkeyed.json()["files"]
    root_ids = pl.read_parquet(uri_path(manifest["uri"]))["_row_id"].to_list()
    assert len(set(root_ids)) == 3 and set(root_ids).isdisjoint(ids.values())
    kept = await call(converter, "convert", {"files": [source], "format": "ndjson"})
    (manifest,) = kept.json()["files"]
    assert "tables" not in manifest and "items" in manifest["schema"]
    assert "_row_id" not in manifest["schema"]

    refused = await call(converter, "convert", {**body, "primary_key": ["nope"]})
    assert refused.status_code == 422 and refused.json()["error"] == "missing_column"
    nested_key = await call(converter, "convert", {**body, "primary_key": ["user"]})
    assert nested_key.status_code == 422, nested_key.text


def version_one() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "name": "a",
            "items": [{"sku": "a1"}, {"sku": "a2"}, {"sku": "a3"}],
            "gone": None,
        },
        {"id": 2, "name": "b", "items": [{"sku": "b1"}], "gone": None},
        {"id": 3, "name": "c", "items": [{"sku": "c1"}], "gone": None},
    ]


def version_two() -> list[dict[str, Any]]:
    # 1: only its list changes (shorter, new values); 2: unchanged; 3: hard-deleted; 4: new.
    return [
        {"id": 1, "name": "a", "items": [{"sku": "a9"}], "gone": None},
        {"id": 2, "name": "b", "items": [{"sku": "b1"}], "gone": None},
        {"id": 3, "name": "c", "items": [{"sku": "c1"}], "gone": True},
        {"id": 4, "name": "d", "items": [], "gone": None},
    ]


async def convert_keyed(converter: httpx.AsyncClient, source: str) -> dict[str, Any]:
    body = {"files": [source], "format": "ndjson", "nested": "unnest", "primary_key": ["id"]}
    response = await call(converter, "convert", body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


EXPECTED_CHILDREN = [("a9", 1, 0), ("b1", 2, 0)]


async def test_merge_into_delta_replaces_a_changed_records_children(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    converter, merger = converter_merger
    name = f"orders_{uuid.uuid4().hex[:6]}"
    first = await convert_keyed(converter, ndjson(tmp_path, "v1", version_one()))
    body = {
        "dataset": name,
        "write_disposition": "merge",
        "primary_key": ["id"],
        "hard_delete": "gone",
    }
    loaded = await call(merger, "merge", {**body, "batches": first})
    assert loaded.status_code == 200, loaded.text
    result = loaded.json()
    assert result["inserted"] == 3 and result["child_tables"]["items"]["inserted"] == 5
    child_uri = result["child_tables"]["items"]["uri"]
    assert child_uri.endswith(f"/datasets/{name}__items")

    second = await convert_keyed(converter, ndjson(tmp_path, "v2", version_two()))
    merged = await call(merger, "merge", {**body, "batches": second})
    assert merged.status_code == 200, merged.text
    result = merged.json()
    assert (result["inserted"], result["deleted"], result["rows"]) == (1, 1, 3)
    items = result["child_tables"]["items"]
    # Child rows are keyed by parent and position: a9 replaces a1 (an update), a2, a3 and the
    # deleted record's c1 go, b1 stays as it is.
    counts = ("inserted", "updated", "deleted", "unchanged", "rows")
    assert tuple(items[c] for c in counts) == (0, 1, 3, 1, 2)

    parents = pl.read_delta(uri_path(result["uri"])).sort("id")
    assert parents.select("id", "name").rows() == [(1, "a"), (2, "b"), (4, "d")]
    children = pl.read_delta(uri_path(child_uri)).sort("sku")
    by_root = {key_id(n): n for n in (1, 2, 3, 4)}
    assert [
        (r["sku"], by_root[r["_parent_id"]], r["_position"]) for r in children.to_dicts()
    ] == EXPECTED_CHILDREN
    assert (children["_root_id"] == children["_parent_id"]).all()

    again = await call(merger, "merge", {**body, "batches": second})
    assert again.json()["replayed"] is True
    assert again.json()["child_tables"]["items"]["replayed"] is True
    assert pl.read_delta(uri_path(child_uri)).height == 2

    # replace: the child table becomes the batch's children, too.
    replaced = await call(
        merger, "merge", {"dataset": name, "write_disposition": "replace", "batches": first}
    )
    assert replaced.status_code == 200, replaced.text
    assert pl.read_delta(uri_path(child_uri)).height == 5
    assert pl.read_delta(uri_path(result["uri"])).height == 3


async def test_merge_into_postgres_replaces_children_in_one_transaction(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    converter, merger = converter_merger
    table = f"orders_{uuid.uuid4().hex[:6]}"
    schema = common_env["target_schemas"][0]
    body = {
        "dataset": "orders",
        "write_disposition": "merge",
        "primary_key": ["id"],
        "hard_delete": "gone",
        "destination": {"kind": "postgres", "table": table},
    }
    first = await convert_keyed(converter, ndjson(tmp_path, "v1", version_one()))
    loaded = await call(merger, "merge", {**body, "batches": first})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["child_tables"]["items"]["rows"] == 5
    second = await convert_keyed(converter, ndjson(tmp_path, "v2", version_two()))
    merged = await call(merger, "merge", {**body, "batches": second})
    assert merged.status_code == 200, merged.text
    items = merged.json()["child_tables"]["items"]
    counts = ("inserted", "updated", "deleted", "unchanged", "rows")
    assert tuple(items[c] for c in counts) == (0, 1, 3, 1, 2)
    again = await call(merger, "merge", {**body, "batches": second})
    assert again.json()["replayed"] is True

    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        parents = await conn.fetch(f'SELECT id FROM "{schema}"."{table}" ORDER BY id')
        children = await conn.fetch(
            f'SELECT sku, _parent_id, _position, _root_id FROM "{schema}"."{table}__items" '
            "ORDER BY sku"
        )
    finally:
        await conn.close()
    assert [r["id"] for r in parents] == [1, 2, 4]
    by_root = {key_id(n): n for n in (1, 2, 3, 4)}
    assert [
        (r["sku"], by_root[r["_parent_id"]], r["_position"]) for r in children
    ] == EXPECTED_CHILDREN
    assert all(r["_root_id"] == r["_parent_id"] for r in children)


async def test_merge_into_duckdb_replaces_children_in_one_transaction(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    converter, merger = converter_merger
    name = f"orders_{uuid.uuid4().hex[:6]}"
    body = {
        "dataset": name,
        "write_disposition": "merge",
        "primary_key": ["id"],
        "hard_delete": "gone",
        "destination": {"kind": "duckdb"},
    }
    first = await convert_keyed(converter, ndjson(tmp_path, "v1", version_one()))
    loaded = await call(merger, "merge", {**body, "batches": first})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["child_tables"]["items"]["rows"] == 5
    second = await convert_keyed(converter, ndjson(tmp_path, "v2", version_two()))
    merged = await call(merger, "merge", {**body, "batches": second})
    assert merged.status_code == 200, merged.text
    items = merged.json()["child_tables"]["items"]
    counts = ("inserted", "updated", "deleted", "unchanged", "rows")
    assert tuple(items[c] for c in counts) == (0, 1, 3, 1, 2)
    again = await call(merger, "merge", {**body, "batches": second})
    assert again.json()["replayed"] is True
    assert again.json()["child_tables"]["items"]["replayed"] is True

    path = Path(common_env["data_root"]) / "duckdb" / f"{name}.duckdb"
    with duckdb.connect(str(path), read_only=True) as conn:
        parents = conn.sql(f"SELECT id FROM {name} ORDER BY id").fetchall()
        children = conn.sql(
            f"SELECT sku, _parent_id, _position, _root_id FROM {name}__items ORDER BY sku"
        ).fetchall()
    assert [r[0] for r in parents] == [1, 2, 4]
    by_root = {key_id(n): n for n in (1, 2, 3, 4)}
    assert [(sku, by_root[parent], pos) for sku, parent, pos, _ in children] == EXPECTED_CHILDREN
    assert all(root == parent for _, parent, _, root in children)


async def test_destinations_without_child_tables_refuse_unnested_batches(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    converter, merger = converter_merger
    batch = await convert_keyed(converter, ndjson(tmp_path, "v1", version_one()))
    name = f"orders_{uuid.uuid4().hex[:6]}"
    refused = await call(
        merger,
        "merge",
        {"dataset": name, "batches": batch, "destination": {"kind": "parquet"}},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "unsupported_destination"
    assert "items" in refused.json()["message"]
    assert not (Path(common_env["data_root"]) / "datasets" / name).exists()
    scd2 = await call(
        merger,
        "merge",
        {
            "dataset": name,
            "batches": batch,
            "write_disposition": "merge",
            "strategy": "scd2",
            "primary_key": ["id"],
        },
    )
    assert scd2.status_code == 422 and scd2.json()["error"] == "unsupported_destination"
    assert not (Path(common_env["data_root"]) / "datasets" / name).exists()

    # A merge needs root ids derived from its key: ids from content would orphan children.
    unkeyed = await call(
        converter,
        "convert",
        {"files": [ndjson(tmp_path, "v1", version_one())], "format": "ndjson", "nested": "unnest"},
    )
    refused = await call(
        merger,
        "merge",
        {
            "dataset": name,
            "write_disposition": "merge",
            "primary_key": ["id"],
            "batches": unkeyed.json(),
        },
    )
    assert refused.status_code == 422 and refused.json()["error"] == "row_id_not_keyed"
    assert not (Path(common_env["data_root"]) / "datasets" / name).exists()
    # Appending content-keyed batches is fine: children and parents land together.
    appended = await call(merger, "merge", {"dataset": name, "batches": unkeyed.json()})
    assert appended.status_code == 200, appended.text
    assert appended.json()["child_tables"]["items"]["rows"] == 5


async def test_a_batch_whose_only_change_is_in_a_list_is_not_taken_for_a_replay(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    converter, merger = converter_merger
    name = f"orders_{uuid.uuid4().hex[:6]}"
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    results, digests = [], []
    for folder, skus in (("one", ["a", "b"]), ("two", ["c"])):
        (tmp_path / folder).mkdir()
        # The same file name and root rows: the root files are byte for byte the same.
        source = ndjson(
            tmp_path / folder, "orders", [{"id": 1, "items": [{"sku": s} for s in skus]}]
        )
        converted = await convert_keyed(converter, source)
        digests.append(converted["files"][0]["sha256"])
        merged = await call(merger, "merge", {**body, "batches": converted})
        assert merged.status_code == 200, merged.text
        results.append(merged.json())
    assert digests[0] == digests[1]  # only the child files tell the batches apart
    assert results[1]["replayed"] is False
    assert results[1]["child_tables"]["items"]["rows"] == 1
    children = pl.read_delta(uri_path(results[1]["child_tables"]["items"]["uri"]))
    assert children.select("sku", "_position").rows() == [("c", 0)]


async def test_a_key_twice_in_an_unnested_merge_is_refused_before_anything_is_written(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient], common_env: dict, tmp_path: Path
) -> None:
    converter, merger = converter_merger
    twice = [{"id": 1, "items": [{"sku": "a"}]}, {"id": 1, "items": [{"sku": "b"}]}]
    batch = await convert_keyed(converter, ndjson(tmp_path, "twice", twice))
    name = f"orders_{uuid.uuid4().hex[:6]}"
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    refused = await call(merger, "merge", {**body, "batches": batch})
    assert refused.status_code == 422 and refused.json()["error"] == "duplicate_key"
    assert not (Path(common_env["data_root"]) / "datasets" / name).exists()
