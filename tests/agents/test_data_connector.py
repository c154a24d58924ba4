"""data-connector against real sources: a local HTTP API, files in tmp dirs, PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import fsspec
import httpx
import pytest

from agents.base.settings import AgentSettings
from agents.data_connector.app import create_app
from shared.db.session import asyncpg_dsn
from tests.agents.source_api import BASIC_PASSWORD, TOKEN, SourceServer, serve_source
from tests.conftest import DATABASE_URL, SAMPLES, asgi_client, service_auth

PLAIN_DB_URL = asyncpg_dsn(DATABASE_URL)  # no password: the test server trusts local users


@pytest.fixture(scope="module")
def source() -> Iterator[SourceServer]:
    with serve_source() as server:
        yield server


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "a.csv").write_text("id,name\n1,x\n")
    (root / "b.csv").write_text("id,name\n2,y\n3,z\n")
    (root / "notes.txt").write_text("hello")
    return root


@pytest.fixture
async def client(common_env: dict, allowed: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(
        **common_env,
        allowed_roots=[str(allowed), str(SAMPLES), "memory://bucket/landing"],
        allow_private_hosts=["127.0.0.1"],
    )
    async with asgi_client(create_app(settings)) as c:
        yield c


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/api/v1/{action}", json=body, headers=service_auth())


async def test_file_source_is_reachable_with_a_recommendation(client: httpx.AsyncClient):
    started = time.perf_counter()
    resp = await call(
        client, "test_connection", {"source": {"kind": "file", "url": str(SAMPLES / "test")}}
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["reachable"] is True and out["kind"] == "file"
    assert out["files"] == 2 and out["is_dir"] is True
    assert {"list", "read", "glob", "modified_time"} <= set(out["capabilities"])
    assert (
        isinstance(out["recommended"]["concurrency"], int)
        and out["recommended"]["concurrency"] >= 1
    )
    assert (
        isinstance(out["recommended"]["batch_size"], int) and out["recommended"]["batch_size"] >= 1
    )
    # The probe's own time: within the call that carried it.
    assert 0 < out["latency_ms"] <= elapsed_ms


async def test_missing_folder_is_unreachable_not_an_error(client: httpx.AsyncClient, allowed: Path):
    resp = await call(
        client, "test_connection", {"source": {"kind": "file", "url": str(allowed / "nope")}}
    )
    assert resp.status_code == 200
    assert resp.json()["reachable"] is False and resp.json()["reason"] == "not found"


async def test_paths_outside_the_allowed_roots_are_refused(
    client: httpx.AsyncClient, allowed: Path, tmp_path: Path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("password\nhunter2\n")
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    (allowed / "sneaky.csv").symlink_to(outside / "secret.csv")
    for url in (
        str(outside),
        f"{allowed}/../outside",
        str(allowed / "escape"),
        "/etc",
        "file:///etc",
    ):
        resp = await call(client, "test_connection", {"source": {"kind": "file", "url": url}})
        assert resp.status_code == 422, (url, resp.text)
        assert resp.json()["error"] == "path_not_allowed", url
    # A symlink inside the root that points out is refused when a glob meets it.
    resp = await call(
        client, "describe", {"source": {"kind": "file", "url": str(allowed), "glob": "*.csv"}}
    )
    assert resp.status_code == 422 and resp.json()["error"] == "path_not_allowed"
    assert "hunter2" not in resp.text
    bad_glob = await call(
        client, "describe", {"source": {"kind": "file", "url": str(allowed), "glob": "../*"}}
    )
    assert bad_glob.status_code == 422


async def test_describe_files_lists_what_a_collect_would_take(
    client: httpx.AsyncClient, allowed: Path
):
    resp = await call(
        client, "describe", {"source": {"kind": "file", "root": str(allowed), "glob": "*.csv"}}
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["count"] == 2 and out["extensions"] == {"csv": 2}
    assert [f["path"] for f in out["files"]] == ["a.csv", "b.csv"]
    assert out["bytes"] == (allowed / "a.csv").stat().st_size + (allowed / "b.csv").stat().st_size


async def test_object_store_urls_go_through_fsspec(client: httpx.AsyncClient):
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/landing/day1/x.json", b'{"a": 1}')
    fs.pipe("/bucket/landing/day1/y.json", b'{"a": 2}')
    fs.pipe("/bucket/private/z.json", b"{}")
    ok = await call(
        client,
        "test_connection",
        {"source": {"kind": "file", "url": "memory://bucket/landing/day1"}},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["reachable"] is True and "object_store" in ok.json()["capabilities"]
    described = await call(
        client,
        "describe",
        {"source": {"kind": "file", "url": "memory://bucket/landing", "glob": "**/*.json"}},
    )
    assert described.json()["count"] == 2
    refused = await call(
        client, "test_connection", {"source": {"kind": "file", "url": "memory://bucket/private"}}
    )
    assert refused.status_code == 422
    escape = await call(
        client,
        "test_connection",
        {"source": {"kind": "file", "url": "memory://bucket/landing/../private"}},
    )
    assert escape.status_code == 422


async def test_http_source_with_bearer_auth(
    client: httpx.AsyncClient, source: SourceServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    body = {
        "source": {
            "kind": "http",
            "url": f"{source.url}/orders",
            "auth": {"type": "bearer", "credential": "ORDERS_API_TOKEN"},
        }
    }
    resp = await call(client, "test_connection", body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["reachable"] is True and out["status_code"] == 200 and out["authenticated"] is True
    assert {"http", "json", "rate_limit_headers", "authenticated"} <= set(out["capabilities"])
    assert out["rate_limit"] == {"limit": 100, "window_s": 60.0, "remaining": 99}
    # 100 per 60 s with 20% headroom: 1.333 req/s caps the recommendation
    assert out["recommended"]["requests_per_s"] == pytest.approx(100 / 60 * 0.8, rel=1e-3)
    assert out["recommended"]["concurrency"] == 1
    assert out["latency"]["probes"] == 3
    assert TOKEN not in resp.text

    no_auth = await call(
        client, "test_connection", {"source": {"kind": "http", "url": f"{source.url}/orders"}}
    )
    assert no_auth.json()["reachable"] is True
    assert no_auth.json()["authenticated"] is False and no_auth.json()["reason"] == "HTTP 401"


async def test_basic_auth_and_secrets_never_echoed(
    client: httpx.AsyncClient, source: SourceServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORDERS_BASIC_PASSWORD", BASIC_PASSWORD)
    body = {
        "source": {
            "kind": "http",
            "url": f"{source.url}/orders",
            "auth": {"type": "basic", "credential": "ORDERS_BASIC_PASSWORD", "username": "reader"},
        }
    }
    resp = await call(client, "describe", body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["records_path"] == "data" and out["sample_records"] == 10
    assert {f["name"] for f in out["fields"]} == {"id", "customer", "amount", "updated_at"}
    assert out["pagination"]["type"] == "page"
    assert BASIC_PASSWORD not in resp.text
    inline = await call(
        client,
        "describe",
        {
            "source": {
                "kind": "http",
                "url": f"{source.url}/orders",
                "auth": {"type": "bearer", "credential": TOKEN},
            }
        },
    )
    assert inline.status_code == 422 and TOKEN not in inline.text


async def test_describe_detects_link_header_and_cursor_pagination(
    client: httpx.AsyncClient, source: SourceServer
):
    link = await call(
        client, "describe", {"source": {"kind": "http", "url": f"{source.url}/orders/link"}}
    )
    assert link.json()["pagination"] == {"type": "link_header"}
    assert link.json()["records_path"] is None and link.json()["sample_records"] == 10
    cursor = await call(
        client, "describe", {"source": {"kind": "http", "url": f"{source.url}/orders/cursor"}}
    )
    assert cursor.json()["pagination"] == {"type": "cursor", "cursor_path": "meta.next_cursor"}
    nxt = await call(
        client, "describe", {"source": {"kind": "http", "url": f"{source.url}/orders/next"}}
    )
    assert nxt.json()["pagination"] == {"type": "next_link", "next_path": "links.next"}


async def test_unreachable_http_source_is_reported(client: httpx.AsyncClient):
    resp = await call(
        client, "test_connection", {"source": {"kind": "http", "url": "http://127.0.0.1:1/"}}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["reachable"] is False and "ConnectError" in resp.json()["reason"]
    unknown = await call(
        client,
        "test_connection",
        {"source": {"kind": "http", "url": "http://no-such-host.invalid/"}},
    )
    assert unknown.status_code == 200, unknown.text
    assert unknown.json()["reachable"] is False and "cannot resolve" in unknown.json()["reason"]


async def test_ssrf_refusals(client: httpx.AsyncClient, source: SourceServer):
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal./computeMetadata/v1/",
        "http://192.168.1.10/",
        "http://[fd00:ec2::254]/",
        f"{source.url}/redirect?to=http://10.0.0.8/admin",
    ):
        resp = await call(client, "test_connection", {"source": {"kind": "http", "url": url}})
        assert resp.status_code == 422, (url, resp.text)
        assert resp.json()["error"] == "host_not_allowed"
    file_url = await call(
        client, "test_connection", {"source": {"kind": "http", "url": "file:///etc/passwd"}}
    )
    assert file_url.status_code == 422


@pytest.fixture
async def pg_table() -> AsyncIterator[str]:
    schema = f"src_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PLAIN_DB_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".orders (id bigint PRIMARY KEY, customer text NOT NULL, '
        "amount numeric(10,2), updated_at timestamptz NOT NULL)"
    )
    await conn.execute(
        f'INSERT INTO "{schema}".orders '
        "SELECT g, 'c' || g, g * 1.5, now() FROM generate_series(1, 50) g"
    )
    await conn.execute(f'ANALYZE "{schema}".orders')
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def test_postgres_test_connection_and_describe(
    client: httpx.AsyncClient, pg_table: str, monkeypatch: pytest.MonkeyPatch
):
    src = {"kind": "postgres", "url": PLAIN_DB_URL, "db_schema": pg_table, "table": "orders"}
    resp = await call(client, "test_connection", {"source": src})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["reachable"] is True and out["server_version"]
    assert "server_side_cursor" in out["capabilities"]
    assert 1000 <= out["recommended"]["batch_size"] <= 100_000

    monkeypatch.setenv("ORDERS_DB_URL", PLAIN_DB_URL)
    described = await call(
        client,
        "describe",
        {"source": {"kind": "postgres", "url_env": "ORDERS_DB_URL", "db_schema": pg_table}},
    )
    assert described.status_code == 200, described.text
    [table] = described.json()["tables"]
    assert table["name"] == "orders" and table["primary_key"] == ["id"]
    assert [c["name"] for c in table["columns"]] == ["id", "customer", "amount", "updated_at"]
    assert table["columns"][1] == {"name": "customer", "type": "text", "nullable": False}
    assert table["estimated_rows"] == 50


async def test_postgres_refuses_inline_passwords_and_hides_env_passwords(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    secret = "Sup3r-s3cret-pw"
    inline = await call(
        client,
        "test_connection",
        {"source": {"kind": "postgres", "url": f"postgresql://u:{secret}@127.0.0.1/x"}},
    )
    assert inline.status_code == 422 and inline.json()["error"] == "inline_secret"
    assert secret not in inline.text
    monkeypatch.setenv("BROKEN_DB_URL", f"postgresql://nobody:{secret}@127.0.0.1:1/none")
    broken = await call(
        client, "test_connection", {"source": {"kind": "postgres", "url_env": "BROKEN_DB_URL"}}
    )
    assert broken.status_code == 200, broken.text
    assert broken.json()["reachable"] is False and secret not in broken.text
    assert "***" in broken.json()["url"]
    private = await call(
        client,
        "test_connection",
        {"source": {"kind": "postgres", "url": "postgresql://u@10.9.8.7/x"}},
    )
    assert private.status_code == 422 and private.json()["error"] == "host_not_allowed"
