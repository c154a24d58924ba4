"""REST pages decoded once and staged in files of whole pages, every value as the API sent it.

The collector decodes each page with orjson, or the stdlib where orjson would change a value
(integers beyond 64 bits, NaN, a byte-order mark), and writes consecutive pages into one file
of `chunk_size` records. Against a real local HTTP API (uvicorn on 127.0.0.1) that serves
exact bytes, and the real collector app.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from tests.agents.source_api import make_order, serve_app
from tests.conftest import asgi_client, service_auth

# JSON texts the stdlib reads exactly and a fast decoder may not (orjson reads the wide
# integers as floats, refuses NaN and the byte-order mark).
WIDE = b'[{"id": 1, "big": 123456789012345678901234567890, "low": -9223372036854775809}]'
NAN = b'[{"id": 1, "x": NaN}, {"id": 2, "x": 1.5}]'
BOM = b'\xef\xbb\xbf[{"id": 1, "name": "bom"}]'
SURROGATE = b'[{"id": 1, "s": "\\ud800 alone"}, {"id": 2, "s": "\\ud83d\\ude42 pair"}]'
UNICODE = [
    {"id": 1, "s": "résumé ✓ 日本語 🙂 עברית", "esc": 'tab\tnl\nquote" back\\ \u2028 \u0001'},
    {"id": 2, "s": "", "keys": {"ключ": "значение", "🙂": [1, "ü"]}},
]


def deep(depth: int) -> Any:
    node: Any = {"leaf": [1, 2.5, None, True, "x"]}
    for level in range(depth):
        node = {f"l{level}": node, "n": level}
    return node


# Records of every JSON kind on one page, at several depths.
MIXED = [
    {"id": 1, "v": 1},
    {"id": 2, "v": "one", "extra": {"a": [1, {"b": None}]}},
    7,
    "plain",
    None,
    [1, [2, [3]]],
    {"id": 3, "v": 1.25, "empty": {}, "list": []},
    deep(60),
]


def api() -> FastAPI:
    app = FastAPI()
    big = [make_order(i) for i in range(1, 25_001)]

    @app.get("/raw/{name}")
    async def raw(name: str, request: Request) -> Response:
        """One page of exact bytes (page 1), then an empty page."""
        body = {"wide": WIDE, "nan": NAN, "bom": BOM, "surrogate": SURROGATE}[name]
        page = int(request.query_params.get("page", 1))
        return Response(body if page == 1 else b"[]", media_type="application/json")

    @app.get("/mixed")
    async def mixed(request: Request) -> Response:
        """MIXED and UNICODE pretty-printed, one list per page, then an empty page."""
        page = int(request.query_params.get("page", 1))
        rows = {1: MIXED, 2: UNICODE}.get(page, [])
        return Response(json.dumps(rows, indent=2, ensure_ascii=page == 2).encode())

    @app.get("/nested")
    async def nested(request: Request) -> Response:
        """Records deep inside the body, 10 a page, the total announced beside them."""
        page = int(request.query_params.get("page", 1))
        rows = [{"order": o, "lines": [{"sku": f"s{o['id']}", "qty": 1}]} for o in big[:35]]
        body = {
            "result": {"payload": {"items": rows[(page - 1) * 10 : page * 10], "page": page}},
            "meta": {"total": 35, "note": {"items": "not these"}},
        }
        return Response(json.dumps(body).encode(), media_type="application/json")

    @app.get("/big")
    async def big_pages(request: Request) -> Response:
        """25,000 orders in pages of `per_page`, announced in X-Total-Count."""
        q = request.query_params
        page, size = int(q.get("page", 1)), int(q.get("per_page", 10_000))
        rows = big[(page - 1) * size : page * size]
        return Response(json.dumps(rows).encode(), headers={"X-Total-Count": str(len(big))})

    @app.get("/shapes")
    async def shapes(request: Request) -> Response:
        """Page 1: `code` a number, a field only the second record has; page 2: `code` text;
        `clash`: page 1 alone mixes a number and a text in `code`."""
        page = int(request.query_params.get("page", 1))
        if request.query_params.get("clash"):
            rows = [{"code": 1}, {"code": "A"}] if page == 1 else []
        else:
            rows = {1: [{"id": 1, "code": 1}, {"id": 2, "code": 2, "late": "x"}]}.get(
                page, [{"id": 3, "code": "A3"}] if page == 2 else []
            )
        return Response(json.dumps(rows).encode(), media_type="application/json")

    return app


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    with serve_app(api()) as url:
        yield url


@pytest.fixture
async def client(common_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    async with asgi_client(create_app(settings)) as c:
        yield c


async def collect(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "rest-pages", "X-Step-Id": uuid.uuid4().hex}
    return await client.post("/api/v1/collect", json=body, headers=headers)


async def collected(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await collect(client, body)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def staged(out: dict[str, Any]) -> bytes:
    return b"".join(Path(f["uri"]).read_bytes() for f in out["files"])


def lines(out: dict[str, Any]) -> list[Any]:
    """The staged NDJSON records, each file checked against its manifest."""
    rows: list[Any] = []
    for manifest in out["files"]:
        data = Path(manifest["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
        assert len(data) == manifest["bytes"] and data.endswith(b"\n")
        got = [json.loads(line) for line in data.decode().split("\n")[:-1]]
        assert len(got) == manifest["rows"]
        rows.extend(got)
    return rows


def paged(url: str) -> dict[str, Any]:
    return {"source": {"kind": "http", "url": url}, "pagination": {"type": "page"}}


async def test_values_the_fast_decoder_would_change_are_kept(
    client: httpx.AsyncClient, source: str
):
    wide = lines(await collected(client, paged(f"{source}/raw/wide")))
    assert wide == [{"id": 1, "big": 123456789012345678901234567890, "low": -(2**63) - 1}]
    assert isinstance(wide[0]["big"], int)
    nan = lines(await collected(client, paged(f"{source}/raw/nan")))
    assert math.isnan(nan[0]["x"]) and nan[1] == {"id": 2, "x": 1.5}
    assert lines(await collected(client, paged(f"{source}/raw/bom"))) == [{"id": 1, "name": "bom"}]
    # A lone surrogate is not UTF-8: that record keeps its escape, the others their text.
    out = await collected(client, paged(f"{source}/raw/surrogate"))
    assert lines(out) == [{"id": 1, "s": "\ud800 alone"}, {"id": 2, "s": "🙂 pair"}]
    assert "🙂".encode() in staged(out)


async def test_mixed_deep_and_unicode_records_round_trip(client: httpx.AsyncClient, source: str):
    out = await collected(client, paged(f"{source}/mixed"))
    assert lines(out) == MIXED + UNICODE  # pretty-printed pages: one record per line still
    assert (out["read"], out["records"], out["pages"]) == (10, 10, 3)
    assert "résumé ✓ 日本語 🙂".encode() in staged(out)  # as UTF-8, not \u escapes


async def test_records_path_into_nested_objects(client: httpx.AsyncClient, source: str):
    body = {**paged(f"{source}/nested"), "records_path": "result.payload.items"}
    out = await collected(client, {**body, "pagination": {"type": "page", "page_size": 10}})
    got = lines(out)
    assert [r["order"]["id"] for r in got] == list(range(1, 36))
    assert got[0]["lines"] == [{"sku": "s1", "qty": 1}]
    assert (out["announced"], out["announced_by"], out["read"]) == (35, "meta.total", 35)
    wrong = await collect(client, {**body, "records_path": "result.payload.page"})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["message"].startswith("page 1: no list of records at")


async def test_pages_of_10000_records_are_staged_in_chunks(client: httpx.AsyncClient, source: str):
    body = {
        "source": {"kind": "http", "url": f"{source}/big"},
        "pagination": {"type": "page", "size_param": "per_page", "page_size": 10_000},
    }
    out = await collected(client, body)
    assert [r["id"] for r in lines(out)] == list(range(1, 25_001))
    assert lines(out)[-1] == make_order(25_000)
    assert (out["announced"], out["read"], out["complete"]) == (25_000, 25_000, True)
    assert [(f["page"], f["last_page"], f["rows"]) for f in out["files"]] == [
        (1, 1, 10_000),
        (2, 2, 10_000),
        (3, 3, 5_000),
    ]
    # Small pages share a file until it holds chunk_size records.
    small = {
        **body,
        "pagination": {"type": "page", "size_param": "per_page", "page_size": 1_000},
        "chunk_size": 4_000,
    }
    out = await collected(client, small)
    assert [(f["page"], f["last_page"], f["rows"]) for f in out["files"]] == [
        (1, 4, 4_000),
        (5, 8, 4_000),
        (9, 12, 4_000),
        (13, 16, 4_000),
        (17, 20, 4_000),
        (21, 24, 4_000),
        (25, 25, 1_000),
    ]
    assert [r["id"] for r in lines(out)] == list(range(1, 25_001))
    parquet = await collected(client, {**small, "format": "parquet"})
    rows = [r for f in parquet["files"] for r in pq.read_table(f["uri"]).to_pylist()]
    assert rows == [make_order(i) for i in range(1, 25_001)]
    assert len(parquet["files"]) == 7


async def test_parquet_keeps_every_field_and_splits_pages_that_disagree(
    client: httpx.AsyncClient, source: str
):
    body = {**paged(f"{source}/shapes"), "format": "parquet"}
    out = await collected(client, body)
    # Pages 1 and 2 disagree on `code`: each page is its own file, as its own table.
    assert [(f["page"], f["schema"]["code"]) for f in out["files"]] == [(1, "int64"), (2, "string")]
    rows = [r for f in out["files"] for r in pq.read_table(f["uri"]).to_pylist()]
    assert rows == [
        {"id": 1, "code": 1, "late": None},  # `late`, first seen on the second record, kept
        {"id": 2, "code": 2, "late": "x"},
        {"id": 3, "code": "A3"},
    ]
    clash = await collect(client, {**paged(f"{source}/shapes?clash=1"), "format": "parquet"})
    assert clash.status_code == 422, clash.text
    assert clash.json()["error"] == "unexpected_payload"
    assert clash.json()["message"].startswith("page 1: the records do not fit one Parquet schema")
    # As NDJSON the same pages collect as they are.
    assert lines(await collected(client, paged(f"{source}/shapes?clash=1"))) == [
        {"code": 1},
        {"code": "A"},
    ]
