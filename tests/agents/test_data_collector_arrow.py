"""data-collector's PostgreSQL source over Arrow batches: values, NULLs and sums round-trip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.agents.conftest import PLAIN_DB_URL, ROWS
from tests.conftest import service_auth

COLUMNS = "id, updated_at, created_local, name, amount, qty, active, note, span, ref, doc, tags"


async def collect(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "arrow-tests", "X-Step-Id": uuid.uuid4().hex}
    return await client.post("/api/v1/collect", json=body, headers=headers)


def collected(out: dict[str, Any]) -> pa.Table:
    return pa.concat_tables(pq.read_table(Path(f["uri"])) for f in out["files"])


async def test_values_nulls_and_sums_round_trip(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, conn = events
    source = {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": schema, "table": "events"}
    resp = await collect(collector, {"source": source, "chunk_size": 1024})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [f["rows"] for f in out["files"]] == [1024, 1024, 952]
    assert out["rows"] == out["read"] == ROWS and out["complete"] is True
    table = collected(out).sort_by("id")
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("span").type == pa.duration("us")

    as_text = COLUMNS.replace("ref,", "ref::text AS ref,").replace("doc,", "doc::text AS doc,")
    expected = await conn.fetch(f'SELECT {as_text} FROM "{schema}".events ORDER BY id')
    got = table.to_pylist()
    for row, record in zip(got, expected, strict=True):
        want = dict(record)
        want["updated_at"] = want["updated_at"].astimezone(UTC)
        want["tags"] = "[" + ",".join(str(t) for t in want["tags"]) + "]"
        assert row == want

    sums = await conn.fetchrow(
        "SELECT sum(amount) AS amount, sum(qty) AS qty, count(*) - count(note) AS note_nulls,"
        " count(*) - count(amount) AS amount_nulls, max(updated_at) AS last"
        f' FROM "{schema}".events'
    )
    assert pc.sum(table["amount"]).as_py() == sums["amount"]
    assert pc.sum(table["qty"]).as_py() == sums["qty"]
    assert table["note"].null_count == sums["note_nulls"] == ROWS // 10
    assert table["amount"].null_count == sums["amount_nulls"]
    assert pc.max(table["updated_at"]).as_py() == sums["last"]


async def test_incremental_lower_bound_is_bound_and_exact(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, conn = events
    source = {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": schema, "table": "events"}
    start = datetime(2026, 3, 29, 0, 30, 0, 123456, tzinfo=UTC) + timedelta(minutes=2500)
    body = {
        "source": source,
        "columns": ["id", "amount"],
        "incremental": {"field": "updated_at", "initial_value": start.isoformat()},
        "chunk_size": 200,
    }
    out = (await collect(collector, body)).json()
    ids = collected(out)["id"].to_pylist()
    assert ids == list(range(2500, ROWS + 1))  # ordered by the cursor, bound included
    assert out["cursor"]["value"] == "2026-03-31T02:30:00.123456Z"

    # A text cursor whose bound would be SQL if it were spliced in: it is only a value.
    await conn.execute(f'UPDATE "{schema}".events SET name = $1 WHERE id = 1', "z'; DROP x; --")
    text_body = {**body, "incremental": {"field": "name", "initial_value": "z'; DROP x; --"}}
    quoted = (await collect(collector, text_body)).json()
    assert collected(quoted)["id"].to_pylist() == [1]


async def test_bad_values_and_options_are_422(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, conn = events
    source = {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": schema, "table": "events"}
    await conn.execute(f"UPDATE \"{schema}\".events SET amount = 'NaN' WHERE id = 5")
    nan = await collect(collector, {"source": source, "columns": ["id", "amount"]})
    assert nan.status_code == 422 and nan.json()["error"] == "invalid_value"
    assert nan.json()["retryable"] is False

    odd = {**source, "url": PLAIN_DB_URL + "?frobnicate=1"}
    unknown = await collect(collector, {"source": odd, "columns": ["id"]})
    assert unknown.status_code == 422, unknown.text
    assert "frobnicate" in unknown.json()["message"]
