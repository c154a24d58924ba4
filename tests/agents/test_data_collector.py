"""data-collector against real sources: files in tmp dirs, a local paginated API, PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow.parquet as pq
import pytest

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from shared.db.session import asyncpg_dsn
from tests.agents.source_api import TOKEN, SourceServer, make_order, serve_source
from tests.conftest import DATABASE_URL, SAMPLES, asgi_client, service_auth

PLAIN_DB_URL = asyncpg_dsn(DATABASE_URL)


@pytest.fixture(scope="module")
def source() -> Iterator[SourceServer]:
    with serve_source() as server:
        yield server


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    return root


@pytest.fixture
async def client(common_env: dict, landing: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(
        **common_env,
        allowed_roots=[str(landing), str(SAMPLES)],
        allow_private_hosts=["127.0.0.1"],
    )
    async with asgi_client(create_app(settings)) as c:
        yield c


async def collect(
    client: httpx.AsyncClient, body: dict[str, Any], step: str | None = None
) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "collect-tests", "X-Step-Id": step or uuid.uuid4().hex}
    return await client.post("/api/v1/collect", json=body, headers=headers)


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def mtime(path: str | Path) -> float:
    return Path(path).stat().st_mtime


def ndjson_records(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for manifest in out["files"]:
        data = Path(manifest["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
        assert len(data) == manifest["bytes"]
        lines = [json.loads(line) for line in data.decode().splitlines()]
        assert len(lines) == manifest["rows"]
        rows.extend(lines)
    return rows


# ----------------------------------------------------------------------------- files


async def test_the_children_of_a_fanned_out_collect_keep_each_other_s_files(
    client: httpx.AsyncClient, landing: Path
) -> None:
    """Map children share the run and step ids; each stages in a folder of its own (by its
    idempotency key), so the second's reset does not wipe what the first staged."""
    for name in ("a", "b"):
        (landing / name).mkdir()
        (landing / name / f"{name}.csv").write_text(f"id,side\n1,{name}\n")
    outputs = []
    for index, name in enumerate(("a", "b")):
        headers = {**service_auth(), "X-Run-Id": "fanout", "X-Step-Id": "collect",
                   "Idempotency-Key": f"fanout:collect:{index}"}  # fmt: skip
        body = {"source": {"kind": "file", "url": str(landing / name), "glob": "*.csv"}}
        response = await client.post("/api/v1/collect", json=body, headers=headers)
        assert response.status_code == 200, response.text
        outputs.append(response.json())
    for name, out in zip(("a", "b"), outputs, strict=True):
        (manifest,) = out["files"]
        assert read(manifest["uri"]) == f"id,side\n1,{name}\n".encode()


async def test_collect_copies_matching_files_with_manifests(client: httpx.AsyncClient):
    resp = await collect(
        client, {"source": {"kind": "file", "root": str(SAMPLES / "test"), "glob": "*.csv"}}
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["count"] == 2
    assert [f["name"] for f in out["files"]] == ["orders_2026_11_a.csv", "orders_2026_11_b.csv"]
    for manifest in out["files"]:
        src = Path(manifest["source_path"])
        assert src.parent == SAMPLES / "test"
        assert read(manifest["uri"]) == read(src)
        assert manifest["sha256"] == hashlib.sha256(read(src)).hexdigest()
        assert manifest["bytes"] == len(read(src))
        assert manifest["modified_at"].endswith("Z")
    assert out["bytes"] == sum(f["bytes"] for f in out["files"])
    assert out["read"] == 2 and out["announced"] is None and out["outcome"] == "complete"
    newest = max(mtime(f["source_path"]) for f in out["files"])
    assert out["cursor"]["field"] == "mtime" and out["cursor"]["value"] == newest
    assert 1 <= len(out["cursor"]["seen"]) <= 2  # the files at the newest mtime


async def test_file_collection_is_incremental_by_modification_time(
    client: httpx.AsyncClient, landing: Path
):
    for name in ("a.csv", "b.csv", "c.csv"):
        (landing / name).write_text(f"id\n{name}\n")
    os.utime(landing / "a.csv", (1_800_000_000, 1_800_000_000))
    os.utime(landing / "b.csv", (1_800_000_100, 1_800_000_100))
    os.utime(landing / "c.csv", (1_800_000_100, 1_800_000_100))
    src = {"kind": "file", "url": str(landing), "glob": "*.csv"}
    first = (await collect(client, {"source": src})).json()
    assert first["count"] == 3
    again = (await collect(client, {"source": src, "cursor": first["cursor"]})).json()
    assert again["count"] == 0 and again["skipped"] == 3
    # A new file with the boundary mtime, a rewritten file, and an untouched one.
    (landing / "d.csv").write_text("id\nd\n")
    os.utime(landing / "d.csv", (1_800_000_100, 1_800_000_100))
    (landing / "a.csv").write_text("id\na2\n")
    os.utime(landing / "a.csv", (1_800_000_200, 1_800_000_200))
    third = (await collect(client, {"source": src, "cursor": again["cursor"]})).json()
    assert [f["name"] for f in third["files"]] == ["a.csv", "d.csv"]
    assert read(third["files"][0]["uri"]) == b"id\na2\n"


async def test_file_collection_by_name_with_a_cap(client: httpx.AsyncClient, landing: Path):
    for day in range(1, 6):
        (landing / f"2026-11-0{day}.json").write_text("{}")
    src = {"kind": "file", "url": str(landing), "glob": "*.json"}
    body = {"source": src, "incremental": {"field": "name"}, "max_files": 3}
    first = (await collect(client, body)).json()
    assert [f["name"] for f in first["files"]] == [
        "2026-11-01.json",
        "2026-11-02.json",
        "2026-11-03.json",
    ]
    assert first["complete"] is False
    assert first["outcome"] == "partial" and first["cap"] == "max_files=3"
    rest = (await collect(client, {**body, "cursor": first["cursor"]})).json()
    assert [f["name"] for f in rest["files"]] == ["2026-11-04.json", "2026-11-05.json"]


async def test_file_collection_refuses_escapes(
    client: httpx.AsyncClient, landing: Path, tmp_path: Path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text("secret\n")
    for body in (
        {"source": {"kind": "file", "url": str(outside)}},
        {"source": {"kind": "file", "url": f"{landing}/../outside"}},
        {"source": {"kind": "file", "url": str(landing), "glob": "../outside/*.csv"}},
    ):
        resp = await collect(client, body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"] == "path_not_allowed"
    (landing / "link.csv").symlink_to(outside / "x.csv")
    resp = await collect(client, {"source": {"kind": "file", "url": str(landing), "glob": "*.csv"}})
    assert resp.status_code == 422 and "secret" not in resp.text


async def test_a_retry_replaces_its_own_output(client: httpx.AsyncClient, landing: Path):
    (landing / "one.csv").write_text("1\n")
    (landing / "two.csv").write_text("2\n")
    step = uuid.uuid4().hex
    src = {"kind": "file", "url": str(landing), "glob": "*.csv"}
    first = (await collect(client, {"source": src}, step=step)).json()
    (landing / "two.csv").unlink()
    second = (await collect(client, {"source": src}, step=step)).json()
    assert [f["uri"] for f in second["files"]] == [first["files"][0]["uri"]]
    run_dir = Path(first["files"][0]["uri"]).parent
    assert sorted(p.name for p in run_dir.iterdir()) == ["one.csv"]


# ----------------------------------------------------------------------------- REST


@pytest.mark.parametrize(
    ("path", "pagination"),
    [
        (
            "/orders",
            {"type": "page", "page_param": "page", "size_param": "per_page", "page_size": 10},
        ),
        (
            "/orders/offset",
            {"type": "offset", "offset_param": "offset", "size_param": "limit", "page_size": 10},
        ),
        (
            "/orders/cursor",
            {"type": "cursor", "cursor_param": "cursor", "cursor_path": "meta.next_cursor"},
        ),
        ("/orders/link", {"type": "link_header"}),
        ("/orders/next", {"type": "next_link", "next_path": "links.next"}),
    ],
)
async def test_rest_pagination_styles_collect_every_record(
    client: httpx.AsyncClient,
    source: SourceServer,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    pagination: dict[str, Any],
):
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    src: dict[str, Any] = {"kind": "http", "url": f"{source.url}{path}"}
    if path == "/orders":
        src["auth"] = {"type": "bearer", "credential": "ORDERS_API_TOKEN"}
    resp = await collect(client, {"source": src, "pagination": pagination})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    expected = sorted(source.state.orders, key=lambda o: (o["updated_at"], o["id"]))
    assert ndjson_records(out) == expected  # row by row, in source order
    assert out["pages"] == 3 and out["complete"] is True
    assert TOKEN not in resp.text


async def test_rest_parquet_output_and_max_pages(client: httpx.AsyncClient, source: SourceServer):
    body = {
        "source": {"kind": "http", "url": f"{source.url}/orders/cursor"},
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
        "format": "parquet",
        "max_pages": 2,
        "on_max_pages": "partial",
    }
    out = (await collect(client, body)).json()
    assert out["pages"] == 2 and out["complete"] is False and out["records"] == 20
    assert out["outcome"] == "partial" and out["cap"] == "max_pages=2"
    rows = [r for f in out["files"] for r in pq.read_table(f["uri"]).to_pylist()]
    assert [r["id"] for r in rows] == list(range(1, 21))
    assert out["files"][0]["schema"]["amount"] == "double"


async def test_rest_incremental_with_lag_and_boundary_dedup(client: httpx.AsyncClient):
    with serve_source() as src_api:  # its own data: this test changes it
        body: dict[str, Any] = {
            "source": {"kind": "http", "url": f"{src_api.url}/orders/cursor"},
            "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
            "incremental": {"field": "updated_at", "param": "since", "lag": 1800, "key": ["id"]},
        }
        first = (await collect(client, body)).json()
        assert len(ndjson_records(first)) == 25
        assert first["cursor"]["value"] == make_order(25)["updated_at"]
        # nothing changed: the lag window is re-read, and every record of it is a duplicate
        second = (await collect(client, {**body, "cursor": first["cursor"]})).json()
        assert second["records"] == 0 and second["duplicates_skipped"] == 4
        assert second["records_seen"] == 4  # 30 min window before 25*10 min: orders 22..25
        # a late writer inside the window, an update, and a new order
        orders = src_api.state.orders
        orders.append(make_order(26, minutes=25 * 10 - 5))  # late: older than the cursor
        orders[9] = {**orders[9], "amount": 999.0, "updated_at": make_order(27)["updated_at"]}
        orders.append(make_order(28))
        third = (await collect(client, {**body, "cursor": second["cursor"]})).json()
        got = ndjson_records(third)
        assert sorted(r["id"] for r in got) == [10, 26, 28]
        assert next(r for r in got if r["id"] == 10)["amount"] == 999.0
        fourth = (await collect(client, {**body, "cursor": third["cursor"]})).json()
        assert fourth["records"] == 0


async def test_rest_retries_flaky_pages_and_rate_limits(
    client: httpx.AsyncClient, source: SourceServer
):
    key = uuid.uuid4().hex
    body = {"source": {"kind": "http", "url": f"{source.url}/flaky/{key}?fail=2&status=502&json=1"}}
    out = (await collect(client, body)).json()
    assert out["records"] == 3 and out["requests"] == 3

    started = time.monotonic()
    limited = {
        "source": {"kind": "http", "url": f"{source.url}/orders/link"},
        "pagination": {"type": "link_header"},
        "rate_limit": {"requests": 1, "per_s": 0.3},
    }
    out = (await collect(client, limited)).json()
    assert out["pages"] == 3
    assert time.monotonic() - started >= 0.55  # pages 2 and 3 waited for the bucket


async def test_rest_errors_and_ssrf(client: httpx.AsyncClient, source: SourceServer):
    unauthorized = await collect(
        client, {"source": {"kind": "http", "url": f"{source.url}/orders"}}
    )
    assert unauthorized.status_code == 422
    assert (
        unauthorized.json()["error"] == "source_rejected"
        and unauthorized.json()["retryable"] is False
    )
    elsewhere = await collect(
        client,
        {
            "source": {"kind": "http", "url": f"{source.url}/orders/elsewhere"},
            "pagination": {"type": "next_link", "next_path": "links.next"},
        },
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["error"] == "cross_origin_link"
    for url in ("http://169.254.169.254/latest/", "http://172.16.0.5/api"):
        resp = await collect(client, {"source": {"kind": "http", "url": url}})
        assert resp.status_code == 422 and resp.json()["error"] == "host_not_allowed"
    inline = await collect(
        client, {"source": {"kind": "http", "url": f"{source.url}/x?api_key={TOKEN}"}}
    )
    assert inline.status_code == 422 and TOKEN not in inline.text
    down = await collect(
        client, {"source": {"kind": "http", "url": f"{source.url}/status/503"}, "max_attempts": 2}
    )
    assert down.status_code == 503 and down.json()["retryable"] is True


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def pg_orders() -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    schema = f"src_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PLAIN_DB_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".orders (id bigint PRIMARY KEY, customer text NOT NULL, '
        "amount numeric(10,2), tags jsonb, updated_at timestamptz NOT NULL)"
    )
    base = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        (
            i,
            f"c{i % 13}",
            Decimal(i) / 4,
            json.dumps({"i": i}) if i % 3 else None,
            base + timedelta(seconds=i),
        )
        for i in range(1, 2501)
    ]
    await conn.copy_records_to_table("orders", records=rows, schema_name=schema)
    try:
        yield schema, conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def source_rows(
    conn: asyncpg.Connection, schema: str, where: str = "true"
) -> list[dict[str, Any]]:
    records = await conn.fetch(
        f'SELECT id, customer, amount, tags::text AS tags, updated_at FROM "{schema}".orders '
        f"WHERE {where} ORDER BY updated_at, id"
    )
    return [dict(r) for r in records]


def parquet_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for manifest in out["files"]:
        data = Path(manifest["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
        table = pq.read_table(manifest["uri"])
        assert table.num_rows == manifest["rows"]
        rows.extend(table.to_pylist())
    return rows


async def test_postgres_streams_chunks_and_continues_from_the_cursor(
    client: httpx.AsyncClient, pg_orders: tuple[str, asyncpg.Connection]
):
    schema, conn = pg_orders
    body: dict[str, Any] = {
        "source": {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": schema, "table": "orders"},
        "incremental": {"field": "updated_at", "lag": 5},
        "chunk_size": 1000,
    }
    resp = await collect(client, body)
    assert resp.status_code == 200, resp.text
    first = resp.json()
    assert first["count"] == 3 and [f["rows"] for f in first["files"]] == [1000, 1000, 500]
    assert first["schema"]["amount"] == "decimal128(10, 2)"
    assert parquet_rows(first) == await source_rows(conn, schema)  # row by row
    assert first["read"] == 2500 and first["announced"] is None and first["complete"] is True

    # new rows, an update, and a late row inside the 5 s lag window
    await conn.execute(
        f"INSERT INTO \"{schema}\".orders VALUES (2501, 'new', 1.25, NULL, $1), "
        "(2502, 'late', 2.50, NULL, $2)",
        datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=3000),
        datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=2498),
    )
    await conn.execute(
        f'UPDATE "{schema}".orders SET amount = 0, updated_at = $1 WHERE id = 7',
        datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=2999),
    )
    second = (await collect(client, {**body, "cursor": first["cursor"]})).json()
    got = parquet_rows(second)
    assert [r["id"] for r in got] == [2502, 7, 2501]
    assert got == await source_rows(conn, schema, "id IN (7, 2501, 2502)")
    assert second["duplicates_skipped"] == 6  # rows 2495..2500: the 5 s lag window

    third = (await collect(client, {**body, "cursor": second["cursor"]})).json()
    assert third["rows"] == 0 and third["count"] == 0


async def test_postgres_errors(
    client: httpx.AsyncClient, pg_orders: tuple[str, asyncpg.Connection]
):
    schema, _ = pg_orders
    src = {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": schema, "table": "nope"}
    missing = await collect(client, {"source": src})
    assert missing.status_code == 422 and missing.json()["error"] == "table_not_found"
    bad_col = await collect(
        client, {"source": {**src, "table": "orders"}, "columns": ["id", "x; drop"]}
    )
    assert bad_col.status_code == 422 and bad_col.json()["error"] == "unknown_column"
    private = await collect(
        client,
        {"source": {"kind": "postgres", "url": "postgresql://u@192.168.0.9/x", "table": "t"}},
    )
    assert private.status_code == 422 and private.json()["error"] == "host_not_allowed"
