"""Load records: every merge writes what it did, and the controller's /datasets API shows it.

The merger and the controller run in-process on the session's schema; the destination is a
real Delta table under a temporary DATA_ROOT (the default for a new dataset).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from deltalake import DeltaTable

from agents.base.settings import AgentSettings
from agents.data_merger.app import create_app as create_merger
from services.orchestrator_controller.app import create_app as create_controller
from services.orchestrator_controller.settings import ControllerSettings
from tests.conftest import asgi_client, service_auth

READER = {"Authorization": "Bearer k-loads-reader"}


@pytest.fixture
async def apis(
    common_env: dict, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    agent = AgentSettings(
        **{**common_env, "data_root": str(tmp_path / "data")}, allowed_roots=[str(tmp_path)]
    )
    controller = ControllerSettings(
        **common_env,
        api_keys=[{"id": "reader", "key": "k-loads-reader", "scopes": ["read"]}],
        engine_url="http://127.0.0.1:9",
        start_loops=False,
    )
    async with (
        asgi_client(create_merger(agent)) as merger,
        asgi_client(create_controller(controller)) as api,
    ):
        yield merger, api


def _batch(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> str:
    path = tmp_path / f"{name}.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return str(path)


async def _merge(merger: httpx.AsyncClient, body: dict[str, Any], run: str) -> dict[str, Any]:
    headers = {**service_auth(), "X-Run-Id": run, "X-Step-Id": "merge", "Idempotency-Key": run}
    response = await merger.post("/api/v1/merge", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_each_load_is_recorded_once_and_its_versions_can_be_read_back(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    merger, api = apis
    name = f"orders-{uuid.uuid4().hex[:8]}"
    first = _batch(tmp_path, "b1", [{"id": i, "amount": i * 10} for i in range(1, 4)])
    second = _batch(tmp_path, "b2", [{"id": 2, "amount": 99}, {"id": 4, "amount": 40}])
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}

    created = await _merge(merger, {**body, "batches": [first]}, "run-1")
    assert created["target"] == "delta" and created["inserted"] == 3
    changed = await _merge(merger, {**body, "batches": [second]}, "run-2")
    assert (changed["inserted"], changed["updated"]) == (1, 1)
    assert changed["version"] > created["version"]
    # The same batch again (another run, another key): answered from the table, not re-applied.
    again = await _merge(merger, {**body, "batches": [second]}, "run-3")
    assert again["replayed"] is True and again["version"] == changed["version"]
    assert DeltaTable(created["uri"]).version() == changed["version"]

    loads = await api.get(f"/datasets/{name}/loads", headers=READER)
    assert loads.status_code == 200, loads.text
    recorded = loads.json()["loads"]
    assert [r["run_id"] for r in recorded] == ["run-2", "run-1"]  # the replay added no row
    newest = recorded[0]
    assert newest["kind"] == "delta" and newest["destination"] == created["uri"]
    assert (newest["inserted"], newest["updated"], newest["deleted"]) == (1, 1, 0)
    assert newest["rows"] == 4 and newest["version"] == changed["version"]
    assert newest["write_disposition"] == "merge" and newest["strategy"] == "upsert"
    assert set(newest["schema"]) == {"id", "amount"}

    versions = (await api.get(f"/datasets/{name}/versions", headers=READER)).json()["versions"]
    assert [v["version"] for v in versions] == [changed["version"], created["version"]]
    listed = (await api.get("/datasets", headers=READER)).json()
    assert {"dataset": name, "loads": 2} in [
        {k: d[k] for k in ("dataset", "loads")} for d in listed
    ]

    # Time travel: the first version, as it was before run-2 changed id 2.
    headers = {**service_auth(), "X-Run-Id": "run-4", "X-Step-Id": "read"}
    snapshot = await merger.post(
        "/api/v1/snapshot", json={"dataset": name, "version": created["version"]}, headers=headers
    )
    assert snapshot.status_code == 200, snapshot.text
    staged = snapshot.json()["files"][0]
    rows = pl.read_parquet(staged["uri"]).sort("id").to_dicts()
    assert rows == [{"id": 1, "amount": 10}, {"id": 2, "amount": 20}, {"id": 3, "amount": 30}]
    assert staged["rows"] == 3


async def test_unknown_datasets_and_bad_names_are_refused(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, api = apis
    missing = await api.get(f"/datasets/never-{uuid.uuid4().hex[:6]}/loads", headers=READER)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_dataset"
    assert (await api.get("/datasets/never/versions", headers=READER)).status_code == 404
    bad = await api.get("/datasets/..%2Fetc/loads", headers=READER)
    assert bad.status_code in (404, 422)
    assert (await api.get("/datasets/x/loads?limit=0", headers=READER)).status_code == 422
    assert (await api.get("/datasets/x/loads")).status_code == 401


async def _refused(merger: httpx.AsyncClient, body: dict[str, Any], run: str) -> dict[str, Any]:
    headers = {**service_auth(), "X-Run-Id": run, "X-Step-Id": "merge", "Idempotency-Key": run}
    response = await merger.post("/api/v1/merge", json=body, headers=headers)
    assert response.status_code == 422, response.text
    refused: dict[str, Any] = response.json()
    return refused


async def test_a_delta_merge_with_nothing_new_keeps_the_version_and_scd2_keeps_history(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    merger, _ = apis
    name = f"customers-{uuid.uuid4().hex[:8]}"
    rows = [{"id": 1, "city": "Oslo"}, {"id": 2, "city": "Lima"}]
    first = _batch(tmp_path, "c1", rows)
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    scd2 = {**body, "strategy": "scd2"}
    created = await _merge(merger, {**scd2, "batches": [first]}, "s-1")
    # The same rows in another order (another batch): nothing changed, no new version.
    reordered = _batch(tmp_path, "c2", rows[::-1])
    same = await _merge(merger, {**scd2, "batches": [reordered]}, "s-2")
    assert (same["written"], same["version"], same["unchanged"]) == (0, created["version"], 2)
    empty = str(tmp_path / "c3.parquet")
    pl.DataFrame(schema={"id": pl.Int64, "city": pl.String}).write_parquet(empty)
    with_no_rows = await _merge(merger, {**body, "strategy": "scd2", "batches": [empty]}, "s-3")
    assert with_no_rows["version"] == created["version"]

    moved = _batch(tmp_path, "c4", [{"id": 1, "city": "Rome"}, {"id": 2, "city": "Lima"}])
    changed = await _merge(merger, {**scd2, "batches": [moved]}, "s-4")
    assert (changed["updated"], changed["unchanged"]) == (1, 1)
    table = pl.read_delta(created["uri"]).sort("id", "_valid_from")
    history = table.select("id", "city", "_is_current").rows()
    assert history == [(1, "Oslo", False), (1, "Rome", True), (2, "Lima", True)]
    closed = table.filter(pl.col("city") == "Oslo")
    assert (
        closed["_valid_to"].item() == table.filter(pl.col("city") == "Rome")["_valid_from"].item()
    )

    # A frozen contract refuses a new column, naming it and the first row that has it.
    wider = _batch(tmp_path, "c5", [{"id": 3, "city": "Kyiv", "vip": True}])
    refused = await _refused(
        merger, {**scd2, "batches": [wider], "schema_contract": "freeze"}, "s-5"
    )
    assert refused["error"] == "schema_contract_violation"
    assert refused["details"]["column"] == "vip" and refused["details"]["row"]["id"] == 3
    assert DeltaTable(created["uri"]).version() == changed["version"]  # nothing written


async def test_what_the_earlier_parquet_format_cannot_do_is_refused(
    apis: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    merger, _ = apis
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    first = _batch(tmp_path, "l1", [{"id": 1}])
    body = {"dataset": name, "write_disposition": "merge", "primary_key": ["id"]}
    legacy = await _merge(
        merger, {**body, "batches": [first], "destination": {"kind": "parquet"}}, "l-1"
    )
    assert legacy["target"] == "parquet"
    # With no kind named, a dataset already in the earlier format stays in it...
    kept = await _merge(merger, {**body, "batches": [_batch(tmp_path, "l2", [{"id": 2}])]}, "l-2")
    assert kept["target"] == "parquet" and kept["rows"] == 2
    # ...and what that format has no way to do is refused, not approximated.
    refused = await _refused(merger, {**body, "batches": [first], "strategy": "scd2"}, "l-3")
    assert refused["error"] == "unsupported_destination"
    bad = await _refused(
        merger,
        {**body, "batches": [first], "write_disposition": "append", "strategy": "scd2"},
        "l-4",
    )
    assert "scd2" in bad["message"]
    headers = {**service_auth(), "X-Run-Id": "l-5", "X-Step-Id": "merge"}
    conflict = await merger.post(
        "/api/v1/merge",
        json={**body, "batches": [first], "destination": {"kind": "delta"}},
        headers=headers,
    )
    assert conflict.status_code == 409 and conflict.json()["error"] == "destination_conflict"
