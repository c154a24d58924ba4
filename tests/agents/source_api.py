"""A small real HTTP source for the connector, collector and fetch-retry tests.

Paginated (page, offset, cursor, next link, Link header), authenticated (bearer, API key,
basic), incremental (`since`), flaky (fails N times, with Retry-After), and a file server with
Range support and a connection that drops mid-body. Served by uvicorn on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

TOKEN = "s3cr3t-orders-token-7f1c"
API_KEY = "k3y-9a8b7c6d5e"
BASIC_USER, BASIC_PASSWORD = "reader", "pa55-w0rd-42"
BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)


def make_order(i: int, *, minutes: int | None = None) -> dict[str, Any]:
    """Order `i`, updated `minutes` (default i*10) after BASE_TIME."""
    updated = BASE_TIME + timedelta(minutes=i * 10 if minutes is None else minutes)
    return {
        "id": i,
        "customer": f"customer-{i % 7}",
        "amount": round(10 + i * 1.25, 2),
        "updated_at": updated.isoformat().replace("+00:00", "Z"),
    }


def file_bytes(name: str, size: int = 300_000) -> bytes:
    """Deterministic content of a served file."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class SourceState:
    """What the source serves and what it saw (tests read and change it)."""

    orders: list[dict[str, Any]] = field(
        default_factory=lambda: [make_order(i) for i in range(1, 26)]
    )
    hits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    ranges: defaultdict[str, list[str | None]] = field(default_factory=lambda: defaultdict(list))
    auth_seen: list[str | None] = field(default_factory=list)


def _authorized(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    if header == f"Bearer {TOKEN}":
        return True
    if (
        request.headers.get("x-api-key") == API_KEY
        or request.query_params.get("api_key") == API_KEY
    ):
        return True
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    return header == f"Basic {basic}"


def _ranged(request: Request, data: bytes, etag: str) -> Response:
    """Serve `data` honouring Range (one range) and If-Range like a file server."""
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Content-Type": "application/octet-stream"}
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted and (if_range is None or if_range == etag):
        start = int(wanted.removeprefix("bytes=").split("-", 1)[0])
        if start >= len(data):
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"}
            )
        body = data[start:]
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return Response(body, status_code=206, headers=headers)
    return Response(data, headers=headers)


def build_app(state: SourceState) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        state.hits[request.url.path] += 1
        state.auth_seen.append(request.headers.get("authorization"))
        response: Response = await call_next(request)
        return response

    def guarded(request: Request) -> JSONResponse | None:
        if not _authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return None

    def selected(request: Request) -> list[dict[str, Any]]:
        since = request.query_params.get("since")
        rows = sorted(state.orders, key=lambda o: (o["updated_at"], o["id"]))
        if since:
            bound = datetime.fromisoformat(since)
            rows = [o for o in rows if datetime.fromisoformat(o["updated_at"]) >= bound]
        return rows

    @app.get("/orders")
    async def orders_by_page(request: Request) -> Response:
        if denied := guarded(request):
            return denied
        page = int(request.query_params.get("page", 1))
        size = int(request.query_params.get("per_page", 10))
        rows = selected(request)
        body = {"data": rows[(page - 1) * size : page * size], "page": page, "total": len(rows)}
        limits = {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "99",
            "RateLimit-Policy": "100;w=60",
        }
        return JSONResponse(body, headers=limits)

    @app.get("/orders/offset")
    async def orders_by_offset(request: Request) -> Response:
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 10))
        return JSONResponse({"items": selected(request)[offset : offset + limit]})

    @app.get("/orders/cursor")
    async def orders_by_cursor(request: Request) -> Response:
        start = int(request.query_params.get("cursor", 0))
        rows = selected(request)
        nxt = start + 10 if start + 10 < len(rows) else None
        return JSONResponse({"data": rows[start : start + 10], "meta": {"next_cursor": nxt}})

    @app.get("/orders/link")
    async def orders_by_link(request: Request) -> Response:
        page = int(request.query_params.get("page", 1))
        rows = selected(request)
        headers = {}
        if page * 10 < len(rows):
            headers["Link"] = f'<{request.url.path}?page={page + 1}>; rel="next"'
        return JSONResponse(rows[(page - 1) * 10 : page * 10], headers=headers)

    @app.get("/orders/next")
    async def orders_by_next(request: Request) -> Response:
        page = int(request.query_params.get("page", 1))
        rows = selected(request)
        nxt = f"/orders/next?page={page + 1}" if page * 10 < len(rows) else None
        return JSONResponse({"results": rows[(page - 1) * 10 : page * 10], "links": {"next": nxt}})

    @app.get("/orders/elsewhere")
    async def orders_elsewhere() -> Response:
        return JSONResponse({"results": [make_order(1)], "links": {"next": "http://example.org/x"}})

    @app.get("/flaky/{key}")
    async def flaky(key: str, request: Request) -> Response:
        fail = int(request.query_params.get("fail", 2))
        status = int(request.query_params.get("status", 503))
        retry_after = request.query_params.get("retry_after")
        if state.hits[f"/flaky/{key}"] <= fail:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return JSONResponse({"error": "try later"}, status_code=status, headers=headers)
        if request.query_params.get("json"):
            return JSONResponse({"data": [make_order(i) for i in range(1, 4)]})
        return Response(file_bytes(key, 5_000), media_type="text/csv")

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return JSONResponse({"status": code}, status_code=code)

    @app.get("/redirect")
    async def redirect(request: Request) -> Response:
        return Response(status_code=302, headers={"Location": request.query_params["to"]})

    @app.get("/files/{name}")
    async def files(name: str, request: Request) -> Response:
        state.ranges[name].append(request.headers.get("range"))
        return _ranged(request, file_bytes(name), etag=f'"{name}-v1"')

    @app.get("/drop/{name}")
    async def drop(name: str, request: Request) -> Response:
        """The first request sends half the body and breaks the connection."""
        state.ranges[name].append(request.headers.get("range"))
        data = file_bytes(name)
        if state.hits[f"/drop/{name}"] > 1:
            return _ranged(request, data, etag=f'"{name}-v1"')

        async def half() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            raise ConnectionError("dropped on purpose")

        headers = {
            "Content-Length": str(len(data)),
            "Accept-Ranges": "bytes",
            "ETag": f'"{name}-v1"',
        }
        return StreamingResponse(half(), headers=headers, media_type="application/octet-stream")

    @app.get("/slow")
    async def slow() -> Response:
        return JSONResponse({"ok": True})

    return app


@dataclass
class SourceServer:
    url: str
    state: SourceState


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Run `app` on a free port of 127.0.0.1 until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serve_source() -> Iterator[SourceServer]:
    """Run the source API on a free port of 127.0.0.1 until the block ends."""
    state = SourceState()
    with serve_app(build_app(state)) as url:
        yield SourceServer(url=url, state=state)
