"""data-merger: a merge with nothing to write keeps the dataset's version (`written: 0`), and
one that changes something (rows, a new column, a replace) still writes a version.

These run on the earlier Parquet dataset format (kept for datasets that already use it); the
Delta destination's own tests (test_destination_delta.py, test_merger_loads.py) hold the same
promises for Delta tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from agents.base.settings import AgentSettings
from agents.data_merger.app import create_app
from tests.conftest import asgi_client, service_auth


@pytest.fixture
async def merger(common_env: dict, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(**common_env, allowed_roots=[str(tmp_path)])
    async with asgi_client(create_app(settings)) as client:
        yield client


async def merge(merger: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    headers = {**service_auth(), "X-Run-Id": "nothing-new", "X-Step-Id": uuid.uuid4().hex}
    body = {"destination": {"kind": "parquet"}, **body}
    response = await merger.post("/api/v1/merge", json=body, headers=headers)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


def batch(tmp_path: Path, frame: pl.DataFrame) -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.parquet"
    frame.write_parquet(path)
    return str(path)


ROWS = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})


async def test_zero_rows_and_unchanged_rows_keep_the_version(
    merger: httpx.AsyncClient, tmp_path: Path
) -> None:
    name = f"ds_{uuid.uuid4().hex[:8]}"
    base = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    first = await merge(merger, {**base, "batches": [batch(tmp_path, ROWS)]})
    assert (first["version"], first["written"], first["inserted"]) == (1, 3, 3)

    empty = batch(tmp_path, ROWS.clear())  # a batch file with the columns and no rows
    for disposition in ("merge", "append"):
        out = await merge(merger, {**base, "write_disposition": disposition, "batches": [empty]})
        assert (out["version"], out["written"], out["rows"]) == (1, 0, 3), out
        assert out["empty_batch"] is True and out["checksum"] == first["checksum"]

    # The same rows again (a reset cursor reloads everything): nothing changes, no version.
    same = await merge(merger, {**base, "batches": [batch(tmp_path, ROWS.reverse())]})
    assert (same["version"], same["written"], same["unchanged"], same["inserted"]) == (1, 0, 3, 0)
    assert same["empty_batch"] is False
    assert [f["uri"] for f in same["files"]] == [f["uri"] for f in first["files"]]

    changed = ROWS.with_columns(
        pl.when(pl.col("id") == 2).then(pl.lit("B")).otherwise(pl.col("v")).alias("v")
    )
    updated = await merge(merger, {**base, "batches": [batch(tmp_path, changed)]})
    assert (updated["version"], updated["updated"], updated["unchanged"]) == (2, 1, 2)


async def test_what_changes_the_dataset_still_writes(
    merger: httpx.AsyncClient, tmp_path: Path
) -> None:
    name = f"ds_{uuid.uuid4().hex[:8]}"
    base = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    await merge(merger, {**base, "batches": [batch(tmp_path, ROWS)]})
    # No rows but a new column: the schema changes, so a version records it.
    wider = ROWS.clear().with_columns(pl.lit(None, dtype=pl.Float64).alias("score"))
    out = await merge(merger, {**base, "batches": [batch(tmp_path, wider)]})
    assert out["version"] == 2 and out["schema"]["score"] == "float64" and out["rows"] == 3
    # Replacing with no rows empties the dataset.
    emptied = await merge(
        merger,
        {**base, "write_disposition": "replace", "batches": [batch(tmp_path, ROWS.clear())]},
    )
    assert (emptied["version"], emptied["rows"], emptied["deleted"]) == (3, 0, 3)


async def test_column_checks_hold_over_nothing_collected(merger: httpx.AsyncClient) -> None:
    """An incremental run with nothing new converts no file: column checks pass over no rows,
    while an explicit row_count_min still refuses them."""
    headers = {**service_auth(), "X-Run-Id": "nothing-new", "X-Step-Id": uuid.uuid4().hex}
    checks = {"not_null": ["id"], "unique": ["id"]}
    body = {"files": [], "checks": checks}
    passed = await merger.post("/api/v1/quality_check", json=body, headers=headers)
    assert passed.status_code == 200, passed.text
    assert passed.json()["rows"] == 0 and all(r["passed"] for r in passed.json()["results"])
    strict = {"files": [], "checks": {**checks, "row_count_min": 1}}
    headers["X-Step-Id"] = uuid.uuid4().hex
    refused = await merger.post("/api/v1/quality_check", json=strict, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"] == "quality_failed"


async def test_a_binary_column_merges(merger: httpx.AsyncClient, tmp_path: Path) -> None:
    """Avro `bytes` and Parquet binary columns land as they are (the checksum hashes them as
    hex; NDJSON, its canonical form, has no bytes)."""
    frame = pl.DataFrame({"id": [1, 2], "blob": [b"\x00\xff", None]})
    name = f"ds_{uuid.uuid4().hex[:8]}"
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    out = await merge(merger, {**body, "batches": [batch(tmp_path, frame)]})
    assert (out["version"], out["written"]) == (1, 2)
    # The same rows in another batch (not a replay of the first): nothing changed.
    same = await merge(merger, {**body, "batches": [batch(tmp_path, frame.reverse())]})
    assert (same["version"], same["written"], same["unchanged"]) == (1, 0, 2), same
