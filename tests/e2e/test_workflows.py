"""The seed workflows end to end through the running platform, on real local sources, with the
result checked row by row against the source."""

from __future__ import annotations

import asyncio
import csv
import uuid
from typing import Any

import asyncpg
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from tests.conftest import DATABASE_URL
from tests.datasets import merged_rows
from tests.e2e.conftest import Platform
from tests.serving import serve

PG_URL = DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://", 1)


def run_workflow(platform: Platform, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    with platform.api() as api:
        response = api.post("/coordinate", json={"workflow": name, "inputs": inputs})
        assert response.status_code == 202, response.text
    return platform.wait_for_run(response.json()["run_id"], timeout_s=120)


def dataset_rows(output: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = merged_rows(output)
    return sorted(rows, key=lambda r: r[key])


def step(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["step_id"] == step_id)


def test_standard_from_a_postgresql_table(platform: Platform) -> None:
    schema = f"src_{uuid.uuid4().hex[:8]}"
    source = [(i, f"customer-{i % 13}", round(i * 1.5, 2)) for i in range(1, 501)]

    async def create() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(
                f"CREATE TABLE {schema}.orders "
                "(id integer PRIMARY KEY, customer text NOT NULL, amount double precision)"
            )
            await conn.copy_records_to_table("orders", schema_name=schema, records=source)
        finally:
            await conn.close()

    asyncio.run(create())
    try:
        run = run_workflow(
            platform,
            "standard",
            {
                "source": {
                    "kind": "postgres",
                    "url": PG_URL,
                    "db_schema": schema,
                    "table": "orders",
                },
                "dataset": f"std_{schema}",
                "primary_key": ["id"],
                "checks": {"row_count_min": 500, "unique": ["id"], "not_null": ["customer"]},
            },
        )
        assert run["status"] == "SUCCEEDED", run
        rows = dataset_rows(step(run, "merge")["output"], "id")
        assert [(r["id"], r["customer"], r["amount"]) for r in rows] == source
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            finally:
                await conn.close()

        asyncio.run(drop())


def test_bulk_file_fans_out_over_every_file(platform: Platform) -> None:
    root = platform.data_root / "sources" / f"bulk_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    expected = []
    for f in range(40):
        with (root / f"part_{f:03d}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "file", "value"])
            for i in range(25):
                row = (f * 100 + i, f"part_{f:03d}", i * f)
                writer.writerow(row)
                expected.append(row)
    (root / "ignored.txt").write_text("not matched by the glob")
    run = run_workflow(
        platform,
        "bulk_file",
        {
            "root": str(root),
            "glob": "*.csv",
            "dataset": f"bulk_{root.name}",
            "write_disposition": "merge",
            "primary_key": ["id"],
        },
    )
    assert run["status"] == "SUCCEEDED", run
    fan = step(run, "convert_each")
    assert fan["map_items"] == {"SUCCEEDED": 40}
    rows = dataset_rows(step(run, "merge")["output"], "id")
    assert [(r["id"], r["file"], r["value"]) for r in rows] == sorted(expected)


def test_resilient_fetch_rides_out_a_flaky_source(platform: Platform) -> None:
    app = FastAPI()
    hits = {"n": 0}
    body = "id,name,score\n" + "".join(f"{i},item-{i},{i * 3}\n" for i in range(1, 201))

    @app.get("/export.csv")
    async def export() -> Response:
        hits["n"] += 1
        if hits["n"] <= 3:  # more failures than one agent call retries: the engine retries too
            return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "0"})
        return Response(body, media_type="text/csv")

    with serve(app) as url:
        run = run_workflow(
            platform,
            "resilient_fetch",
            {
                "url": f"{url}/export.csv",
                "dataset": f"rf_{uuid.uuid4().hex[:8]}",
                "primary_key": ["id"],
                "format": "csv",
            },
        )
    assert run["status"] == "SUCCEEDED", run
    fetch = step(run, "fetch")
    assert fetch["output"]["attempts"] >= 2 or fetch["attempts"] >= 2
    rows = dataset_rows(step(run, "merge")["output"], "id")
    assert [(r["id"], r["name"], r["score"]) for r in rows] == [
        (i, f"item-{i}", i * 3) for i in range(1, 201)
    ]
