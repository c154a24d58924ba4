"""The `standard` workflow with `nested: unnest`, end to end through the running platform: a
folder of NDJSON orders with nested items, merged into a Delta dataset and its child table
`<dataset>__items`; a second run after one order's items changed replaces that order's
children."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from tests.e2e.conftest import Platform
from tests.e2e.test_workflows import run_workflow, step


def _write(path: Path, orders: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(o) + "\n" for o in orders))


def _rows(uri: str) -> list[dict[str, Any]]:
    return DeltaTable(uri).to_pyarrow_table().to_pylist()


def test_standard_unnests_orders_and_a_changed_order_gets_new_children(
    platform: Platform,
) -> None:
    folder = platform.data_root / "sources" / f"unnest_{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    orders = folder / "orders.ndjson"
    _write(
        orders,
        [
            {"id": 1, "customer": {"name": "Ada"}, "items": [{"sku": "a"}, {"sku": "b"}]},
            {"id": 2, "customer": {"name": "Ken"}, "items": [{"sku": "c"}]},
        ],
    )
    name = f"nested_{uuid.uuid4().hex[:6]}"
    inputs = {
        "source": {"kind": "file", "url": str(folder)},
        "dataset": name,
        "primary_key": ["id"],
        "format": "ndjson",
        "nested": "unnest",
    }
    first = run_workflow(platform, "standard", inputs)
    assert first["status"] == "SUCCEEDED", first
    converted = step(first, "convert")["output"]
    assert converted["tables"]["items"]["rows"] == 3
    merged = step(first, "merge")["output"]
    assert merged["rows"] == 2 and merged["child_tables"]["items"]["rows"] == 3
    parents = sorted(_rows(merged["uri"]), key=lambda r: r["id"])
    assert [(r["id"], r["customer__name"]) for r in parents] == [(1, "Ada"), (2, "Ken")]

    _write(
        orders,
        [
            {"id": 1, "customer": {"name": "Ada"}, "items": [{"sku": "z"}]},
            {"id": 2, "customer": {"name": "Ken"}, "items": [{"sku": "c"}]},
        ],
    )
    stat = orders.stat()
    os.utime(orders, (stat.st_atime, stat.st_mtime + 10))  # a later mtime: collected again
    second = run_workflow(platform, "standard", inputs)
    assert second["status"] == "SUCCEEDED", second
    items = step(second, "merge")["output"]["child_tables"]["items"]
    assert items["rows"] == 2
    children = _rows(items["uri"])
    by_parent = {r["_row_id"]: r["id"] for r in parents}
    assert sorted((by_parent[r["_parent_id"]], r["_position"], r["sku"]) for r in children) == [
        (1, 0, "z"),
        (2, 0, "c"),
    ]
