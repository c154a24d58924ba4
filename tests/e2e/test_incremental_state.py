"""`standard` keeps its cursor in the platform, end to end: a real PostgreSQL source table, the
running platform, and the state read and reset through the API and `ingestctl`.

Run 1 loads everything and commits the cursor; run 2 loads only what changed since (the rows
at the boundary `updated_at` are re-read and skipped, a late row at that same instant is not);
run 3 finds nothing, succeeds and writes no dataset version; a reset makes run 4 reload all.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from deltalake import DeltaTable

from tests.conftest import DATABASE_URL
from tests.datasets import merged_rows
from tests.e2e.conftest import API_KEY, Platform

PG_URL = DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
ROOT = Path(__file__).resolve().parents[2]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
BOUNDARY = BASE + timedelta(minutes=30)  # the newest updated_at of the first load: ids 291-300


def sql(statement: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(PG_URL)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def source_table() -> Iterator[str]:
    schema = f"inc_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE SCHEMA {schema}")
    sql(f"CREATE TABLE {schema}.items (id int PRIMARY KEY, name text, updated_at timestamptz)")
    # Ten rows per minute: the last ten share the newest updated_at, the boundary.
    sql(
        f"INSERT INTO {schema}.items SELECT i, 'item-' || i, "
        "$1::timestamptz + ((i + 9) / 10) * interval '1 minute' FROM generate_series(1, 300) i",
        BASE,
    )
    try:
        yield schema
    finally:
        sql(f"DROP SCHEMA {schema} CASCADE")


def run(platform: Platform, inputs: dict[str, Any]) -> dict[str, Any]:
    with platform.api() as api:
        response = api.post("/coordinate", json={"workflow": "standard", "inputs": inputs})
        assert response.status_code == 202, response.text
    done = platform.wait_for_run(response.json()["run_id"], timeout_s=120)
    assert done["status"] == "SUCCEEDED", done
    return done


def output(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    out: dict[str, Any] = next(s for s in run["steps"] if s["step_id"] == step_id)["output"]
    return out


def dataset(run: dict[str, Any]) -> list[tuple[int, str, datetime]]:
    rows = merged_rows(output(run, "merge"))
    return sorted((r["id"], r["name"], r["updated_at"]) for r in rows)


def source(schema: str) -> list[tuple[int, str, datetime]]:
    return [tuple(r) for r in sql(f"SELECT id, name, updated_at FROM {schema}.items ORDER BY id")]


def ingestctl(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INGESTCTL_URL": platform.controller, "INGESTCTL_API_KEY": API_KEY}
    return subprocess.run(
        [sys.executable, "-m", "ingestctl", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_standard_resumes_from_its_stored_cursor(platform: Platform, source_table: str) -> None:
    schema = source_table
    name = f"inc_{schema}"
    inputs = {
        "source": {"kind": "postgres", "url": PG_URL, "db_schema": schema, "table": "items"},
        "incremental": {"field": "updated_at"},
        "dataset": name,
        "primary_key": ["id"],
    }
    first = run(platform, inputs)
    assert output(first, "collect")["rows"] == 300
    assert output(first, "commit")["committed"] is True
    assert dataset(first) == source(schema)
    with platform.api() as api:
        state = api.get(f"/sources/{name}/state").json()  # keyed by the dataset by default
    assert state["run_id"] == first["run_id"]
    cursor = state["cursor"]
    assert cursor["field"] == "updated_at" and len(cursor["seen"]) == 10
    assert datetime.fromisoformat(cursor["value"]) == BOUNDARY

    # Two new rows, two updated ones, and a late writer landing at the boundary instant.
    later = BOUNDARY + timedelta(minutes=5)
    sql(
        f"INSERT INTO {schema}.items VALUES (301, 'late', $1), (302, 'new', $2), (303, 'new', $2)",
        BOUNDARY,
        later,
    )
    sql(f"UPDATE {schema}.items SET name = 'changed', updated_at = $1 WHERE id IN (5, 295)", later)
    second = run(platform, inputs)
    collected = output(second, "collect")
    assert collected["cursor_from"] == "state"
    assert (collected["rows"], collected["duplicates_skipped"]) == (5, 9)  # 291-300 but 295
    merged = output(second, "merge")
    assert (merged["inserted"], merged["updated"], merged["unchanged"]) == (3, 2, 0)
    assert merged["version"] == output(first, "merge")["version"] + 1
    assert dataset(second) == source(schema)  # 303 rows, none twice

    # Nothing changed: the run succeeds with zero rows and the dataset keeps its version.
    third = run(platform, inputs)
    assert (output(third, "collect")["rows"], output(third, "convert")["files"]) == (0, [])
    idle = output(third, "merge")
    assert (idle["written"], idle["version"], idle["rows"]) == (0, merged["version"], 303)
    assert DeltaTable(idle["uri"]).version() == merged["version"]  # no commit was made
    shown = ingestctl(platform, "state", "show", name, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert stored["run_id"] == third["run_id"]
    assert datetime.fromisoformat(stored["cursor"]["value"]) == later

    # A reset forgets the cursor: the next run reads the whole table again.
    reset = ingestctl(platform, "state", "reset", name)
    assert reset.returncode == 0, reset.stderr
    with platform.api() as api:
        assert api.get(f"/sources/{name}/state").status_code == 404
        assert api.delete(f"/sources/{name}/state").status_code == 404
    fourth = run(platform, inputs)
    reloaded = output(fourth, "collect")
    assert (reloaded["rows"], reloaded["cursor_from"]) == (303, None)
    assert output(fourth, "merge")["unchanged"] == 303
    assert dataset(fourth) == source(schema)


def test_bulk_file_takes_only_new_files(platform: Platform) -> None:
    root = platform.data_root / "sources" / f"inc_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    for part in range(3):
        (root / f"part_{part}.csv").write_text(
            f"id,part\n{part * 10},{part}\n{part * 10 + 1},{part}\n"
        )
        os.utime(root / f"part_{part}.csv", (1_800_000_000 + part, 1_800_000_000 + part))
    name = f"bulk_{root.name}"
    inputs = {
        "root": str(root),
        "dataset": name,
        "write_disposition": "merge",
        "primary_key": ["id"],
    }

    def bulk() -> dict[str, Any]:
        with platform.api() as api:
            response = api.post("/coordinate", json={"workflow": "bulk_file", "inputs": inputs})
            assert response.status_code == 202, response.text
        done = platform.wait_for_run(response.json()["run_id"], timeout_s=120)
        assert done["status"] == "SUCCEEDED", done
        return done

    first = bulk()
    assert output(first, "stage")["count"] == 3 and output(first, "merge")["rows"] == 6
    idle = bulk()  # nothing new: no file converted, no version written
    assert output(idle, "stage")["count"] == 0
    assert (output(idle, "merge")["written"], output(idle, "merge")["version"]) == (
        0,
        output(first, "merge")["version"],
    )
    (root / "part_9.csv").write_text("id,part\n90,9\n")
    os.utime(root / "part_9.csv", (1_800_000_100, 1_800_000_100))
    third = bulk()
    assert [f["name"] for f in output(third, "stage")["files"]] == ["part_9.csv"]
    assert output(third, "merge")["rows"] == 7 and output(third, "merge")["inserted"] == 1


def test_standard_collects_a_query_with_bound_params_incrementally(
    platform: Platform, source_table: str
) -> None:
    """A query source (a join and a filter bound from params) through the whole pipeline, and
    its cursor resumed by the next run like a table's."""
    schema = source_table
    sql(f"CREATE TABLE {schema}.tags (item_id int, tag text)")
    sql(f"INSERT INTO {schema}.tags SELECT i, 'tag-' || (i % 3) FROM generate_series(1, 300) i")
    query = (
        f"SELECT i.id, i.name, i.updated_at, t.tag FROM {schema}.items i "
        f"JOIN {schema}.tags t ON t.item_id = i.id WHERE t.tag = :tag AND i.id <= :top"
    )
    name = f"q_{schema}"
    inputs = {
        "source": {
            "kind": "postgres", "url": PG_URL, "query": query,
            "params": {"tag": "tag-1", "top": 250},
        },
        "incremental": {"field": "updated_at", "key": ["id"]},
        "dataset": name,
        "primary_key": ["id"],
    }  # fmt: skip
    wanted = f"SELECT id FROM {schema}.items WHERE id % 3 = 1 AND id <= 250 ORDER BY id"
    first = run(platform, inputs)
    rows = merged_rows(output(first, "merge"))
    assert sorted(r["id"] for r in rows) == [r["id"] for r in sql(wanted)]
    assert {r["tag"] for r in rows} == {"tag-1"}

    sql(f"UPDATE {schema}.items SET name = 'changed', updated_at = now() WHERE id IN (4, 5)")
    second = run(platform, inputs)
    assert output(second, "collect")["rows"] == 1  # id 4 matches the query, id 5 does not
    assert output(second, "merge")["updated"] == 1
    changed = {r["id"]: r["name"] for r in merged_rows(output(second, "merge"))}
    assert changed[4] == "changed" and len(changed) == len(rows)
