"""data-collector: durable source state (commit after the data landed) and the Redis stream source.

Real PostgreSQL (the `source_state` table of the session schema) and the real local Redis; test
stream keys live under the session's unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import polars as pl
import pyarrow.parquet as pq
import pytest
from redis.asyncio import Redis

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from agents.data_merger.app import create_app as create_merger
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, REDIS_URL, asgi_client, service_auth


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    return root


@pytest.fixture
def settings(common_env: dict, landing: Path) -> AgentSettings:
    return AgentSettings(
        **common_env, allowed_roots=[str(landing)], allow_private_hosts=["127.0.0.1"]
    )


@pytest.fixture
async def client(settings: AgentSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings)) as c:
        yield c


async def call(
    client: httpx.AsyncClient, action: str, body: dict[str, Any], *, run: str = "state-tests"
) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": run, "X-Step-Id": uuid.uuid4().hex}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


async def ok(
    client: httpx.AsyncClient, action: str, body: dict[str, Any], *, run: str = "state-tests"
) -> dict[str, Any]:
    resp = await call(client, action, body, run=run)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def names(out: dict[str, Any]) -> list[str]:
    return [f["name"] for f in out["files"]]


def touch(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


# ----------------------------------------------------------------------------- source state


async def test_state_is_loaded_only_after_a_commit(
    client: httpx.AsyncClient, landing: Path, common_env: dict
):
    key = f"files-{uuid.uuid4().hex[:8]}"
    touch(landing / "a.csv", "id\n1\n", 1_800_000_000)
    touch(landing / "b.csv", "id\n2\n", 1_800_000_100)
    body = {"source": {"kind": "file", "url": str(landing), "glob": "*.csv"}, "state_key": key}

    assert await ok(client, "get_state", {"state_key": key}) == {
        "state_key": key,
        "cursor": None,
        "run_id": None,
        "updated_at": None,
    }
    first = await ok(client, "collect", body, run="run-1")
    assert names(first) == ["a.csv", "b.csv"]
    assert first["state_key"] == key and first["cursor_from"] is None
    assert first["cursor"]["value"] == 1_800_000_100

    # run-1 failed before its merge, so it never committed: run-2 collects the same files
    again = await ok(client, "collect", body, run="run-2")
    assert names(again) == ["a.csv", "b.csv"] and again["cursor_from"] is None

    committed = await ok(
        client, "commit_state", {"state_key": key, "cursor": again["cursor"]}, run="run-2"
    )
    assert committed["cursor"] == again["cursor"] and committed["run_id"] == "run-2"
    stored = await ok(client, "get_state", {"state_key": key})
    assert stored["cursor"] == again["cursor"] and stored["run_id"] == "run-2"
    assert stored["updated_at"] is not None

    # run-3 continues after the committed cursor: only the new file
    touch(landing / "c.csv", "id\n3\n", 1_800_000_200)
    third = await ok(client, "collect", body, run="run-3")
    assert names(third) == ["c.csv"] and third["cursor_from"] == "state"
    assert third["skipped"] == 2

    # an explicit cursor wins over the stored one
    explicit = await ok(
        client, "collect", {**body, "cursor": {"field": "mtime", "value": 1_800_000_050}}
    )
    assert names(explicit) == ["b.csv", "c.csv"] and explicit["cursor_from"] == "body"

    # last write wins, and the row records the run that wrote it (one row per key)
    await ok(client, "commit_state", {"state_key": key, "cursor": third["cursor"]}, run="run-3")
    stored = await ok(client, "get_state", {"state_key": key})
    assert stored["cursor"]["value"] == 1_800_000_200 and stored["run_id"] == "run-3"
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        rows = await conn.fetch(
            f'SELECT key, value, run_id FROM "{common_env["db_schema"]}".source_state '
            "WHERE key = $1",
            key,
        )
    finally:
        await conn.close()
    assert len(rows) == 1 and rows[0]["run_id"] == "run-3"
    assert json.loads(rows[0]["value"]) == third["cursor"]
    after = await ok(client, "collect", body, run="run-4")
    assert after["count"] == 0


async def test_state_bodies_are_validated(client: httpx.AsyncClient):
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("commit_state", {"state_key": "k", "cursor": [1, 2]}, "cursor"),
        ("commit_state", {"state_key": "k"}, "cursor"),
        ("commit_state", {"state_key": "../etc", "cursor": {}}, "state_key"),
        # jsonb holds no U+0000: refused by the body, not by PostgreSQL as a server error
        ("commit_state", {"state_key": "k", "cursor": {"\u0000": None}}, "cursor"),
        ("commit_state", {"state_key": "k", "cursor": {"seen": ["a\u0000b"]}}, "cursor"),
        ("get_state", {"state_key": ""}, "state_key"),
        (
            "collect",
            {"source": {"kind": "file", "url": "/tmp"}, "state_key": "bad key"},
            "state_key",
        ),
    ]
    for action, body, field in cases:
        resp = await call(client, action, body)
        assert resp.status_code == 422, (action, body, resp.text)
        out = resp.json()
        assert out["error"] == "validation_error"
        assert field in out["message"] and field in [d["field"] for d in out["details"]]


# ----------------------------------------------------------------------------- Redis stream


@pytest.fixture
async def redis(stream_prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{stream_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def stream(stream_prefix: str) -> str:
    return f"{stream_prefix}collector:{uuid.uuid4().hex[:8]}"


def entry(i: int) -> dict[str, str]:
    """Entry i: plain fields, and a JSON object under `data` every other entry."""
    fields = {"n": str(i), "kind": "tick"}
    if i % 2:
        fields["data"] = json.dumps({"price": i * 1.5, "symbol": f"S{i % 3}", "kind": "nested"})
    else:
        fields["data"] = "not json"
    return fields


def expected_row(entry_id: str, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"_stream_id": entry_id, "n": str(i), "kind": "tick"}
    if i % 2:  # expanded; the entry's own `kind` wins over the object's
        row.update(price=i * 1.5, symbol=f"S{i % 3}")
    else:
        row["data"] = "not json"
    return row


def stream_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for manifest in out["files"]:
        if manifest["format"] == "parquet":
            part = pq.read_table(manifest["uri"]).to_pylist()
            rows.extend({k: v for k, v in r.items() if v is not None} for r in part)
        else:
            rows.extend(json.loads(line) for line in Path(manifest["uri"]).read_text().splitlines())
    return rows


async def xadd_many(redis: Redis, stream: str, n: int) -> list[str]:
    ids: list[str] = []
    for i in range(n):
        entry_id: Any = await redis.xadd(stream, entry(i))  # type: ignore[arg-type]
        ids.append(entry_id.decode())
    return ids


async def test_stream_redelivers_until_acked(client: httpx.AsyncClient, redis: Redis, stream: str):
    ids = await xadd_many(redis, stream, 25)
    source = {
        "kind": "redis_stream",
        "url": REDIS_URL,
        "stream": stream,
        "group": "ingest",
        "consumer": "collector-1",
        "count": 10,
    }
    first = await ok(client, "collect", {"source": source})
    assert first["kind"] == "redis_stream" and first["count"] == 10 and first["rows"] == 10
    assert first["entry_ids"] == ids[:10] and first["redelivered"] is False
    assert stream_rows(first) == [expected_row(ids[i], i) for i in range(10)]
    assert first["cursor"] == {
        "stream": stream,
        "group": "ingest",
        "consumer": "collector-1",
        "last_id": ids[9],
    }

    # the run crashed before ack_stream: the next collect gets the same entries again
    again = await ok(client, "collect", {"source": source})
    assert again["entry_ids"] == ids[:10] and again["redelivered"] is True
    assert stream_rows(again) == stream_rows(first)

    acked = await ok(client, "ack_stream", {"source": source, "entry_ids": again["entry_ids"]})
    assert acked == {"stream": stream, "group": "ingest", "requested": 10, "acked": 10}
    repeat = await ok(client, "ack_stream", {"source": source, "entry_ids": ids[:10]})
    assert repeat["acked"] == 0  # acking twice is harmless

    second = await ok(client, "collect", {"source": source, "format": "parquet"})
    assert second["entry_ids"] == ids[10:20] and second["redelivered"] is False
    assert stream_rows(second) == [expected_row(ids[i], i) for i in range(10, 20)]
    await ok(client, "ack_stream", {"source": source, "entry_ids": second["entry_ids"]})

    third = await ok(client, "collect", {"source": source})
    assert third["entry_ids"] == ids[20:] and third["complete"] is True
    await ok(client, "ack_stream", {"source": source, "entry_ids": third["entry_ids"]})
    pending = await redis.xpending(stream, "ingest")
    assert pending["pending"] == 0

    empty = await ok(client, "collect", {"source": {**source, "block_ms": 50}})
    assert empty["count"] == 0 and empty["files"] == [] and empty["cursor"]["last_id"] is None
    assert (await ok(client, "ack_stream", {"source": source, "entry_ids": []}))["acked"] == 0


async def test_stream_crash_before_ack_adds_no_duplicate_rows(
    settings: AgentSettings, client: httpx.AsyncClient, redis: Redis, stream: str
):
    ids = await xadd_many(redis, stream, 25)
    source = {"kind": "redis_stream", "url": REDIS_URL, "stream": stream, "group": "g", "count": 10}
    dataset = f"stream-{uuid.uuid4().hex[:8]}"
    merge_body = {"dataset": dataset, "write_disposition": "merge", "primary_key": ["_stream_id"]}
    async with asgi_client(create_merger(settings)) as merger:

        async def run(*, crash_before_ack: bool) -> dict[str, Any]:
            collected = await ok(client, "collect", {"source": source, "format": "parquet"})
            merged = await ok(merger, "merge", {**merge_body, "batches": [collected]})
            if not crash_before_ack:
                body = {"source": source, "entry_ids": collected["entry_ids"]}
                await ok(client, "ack_stream", body)
            return merged

        assert (await run(crash_before_ack=True))["rows"] == 10
        assert (await run(crash_before_ack=False))["rows"] == 10  # the same 10, merged again
        assert (await run(crash_before_ack=False))["rows"] == 20
        final = await run(crash_before_ack=False)
    assert final["rows"] == 25
    stored = pl.read_delta(final["uri"])["_stream_id"].to_list()
    assert sorted(stored) == sorted(ids)  # every entry once: none dropped, none twice


async def test_stream_url_from_env_and_deleted_pending_entries(
    client: httpx.AsyncClient, redis: Redis, stream: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TICKS_REDIS_URL", REDIS_URL)
    ids = await xadd_many(redis, stream, 3)
    source: dict[str, Any] = {"kind": "redis_stream", "url_env": "TICKS_REDIS_URL"}
    source |= {"stream": stream, "group": "g", "count": 5, "expand_json": False}
    first = await ok(client, "collect", {"source": source})
    assert stream_rows(first)[1] == {"_stream_id": ids[1], **entry(1)}  # `data` kept as text
    await redis.xdel(stream, ids[0])  # trimmed while pending: no row, but still acked
    again = await ok(client, "collect", {"source": source})
    assert again["entry_ids"] == ids and again["rows"] == 2 and again["deleted"] == 1
    acked = await ok(client, "ack_stream", {"source": source, "entry_ids": again["entry_ids"]})
    assert acked["acked"] == 3


async def test_stream_bad_inputs(client: httpx.AsyncClient, stream: str):
    base = {"kind": "redis_stream", "stream": stream, "group": "g"}
    secret = "hunter2-pw"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("collect", {"source": {**base, "url": f"redis://:{secret}@127.0.0.1:6379/0"}}, "url"),
        ("collect", {"source": {**base, "url": f"redis://u:{secret}@127.0.0.1/0"}}, "url"),
        ("collect", {"source": {**base, "url": "unix:///tmp/redis.sock"}}, "url"),
        ("collect", {"source": {**base, "url": "redis://127.0.0.1/0?db=2"}}, "url"),
        ("collect", {"source": base}, "source.redis_stream"),
        ("collect", {"source": {**base, "url": REDIS_URL, "url_env": "X_URL"}}, "redis_stream"),
        ("collect", {"source": {**base, "url": REDIS_URL, "count": 0}}, "count"),
        ("collect", {"source": {**base, "url": REDIS_URL, "group": ""}}, "group"),
        ("collect", {"source": {**base, "url_env": "lower-case"}}, "url_env"),
        ("ack_stream", {"source": {**base, "url": REDIS_URL}, "entry_ids": ["x"]}, "entry_ids.0"),
        ("ack_stream", {"source": {**base, "url": REDIS_URL}}, "entry_ids"),
    ]
    for action, body, field in cases:
        resp = await call(client, action, body)
        assert resp.status_code == 422, (body, resp.text)
        out = resp.json()
        assert out["error"] == "validation_error", out
        assert field in out["message"], (field, out["message"])
        assert secret not in resp.text

    refused = [
        ({**base, "url_env": "REDIS_URL"}, "credential_not_allowed"),
        ({**base, "url_env": "NOT_SET_ANYWHERE_42"}, "credential_missing"),
        ({**base, "url": "redis://10.20.30.40:6379/0"}, "host_not_allowed"),
        ({**base, "url": "redis://169.254.169.254/0"}, "host_not_allowed"),
    ]
    for source, code in refused:
        resp = await call(client, "collect", {"source": source})
        assert resp.status_code == 422 and resp.json()["error"] == code, resp.text
    inc = await call(
        client, "collect", {"source": {**base, "url": REDIS_URL}, "incremental": {"field": "n"}}
    )
    assert inc.status_code == 422 and inc.json()["error"] == "invalid_cursor"


async def test_stream_unreachable_is_retryable(client: httpx.AsyncClient, stream: str):
    source = {"kind": "redis_stream", "url": "redis://127.0.0.1:1/0", "stream": stream}
    resp = await call(client, "collect", {"source": {**source, "group": "g"}})
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "source_unavailable" and resp.json()["retryable"] is True
