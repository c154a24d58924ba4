"""No silent loss in a REST collect: no page cap by default, a user's cap fails or is an explicit
partial, a missing next-page signal against an announced total is an error, loops are refused,
and the merger's quality step checks the collect's announced against read counts.

Against a real local HTTP API (uvicorn on 127.0.0.1) and the real collector and merger apps.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app as create_collector
from agents.data_merger.app import create_app as create_merger
from tests.agents.source_api import make_order, serve_app
from tests.conftest import asgi_client, service_auth

ORDERS = [make_order(i) for i in range(1, 1101)]


def api() -> FastAPI:
    app = FastAPI()

    @app.get("/pages")
    async def pages(request: Request) -> Response:
        """Page style; `n` records, announced in the body's `total` (or `announce` of them)."""
        q = request.query_params
        n, page, size = int(q.get("n", 1100)), int(q.get("page", 1)), int(q.get("per_page", 10))
        rows = ORDERS[:n][(page - 1) * size : page * size]
        return JSONResponse({"data": rows, "total": int(q.get("announce", n))})

    @app.get("/link")
    async def link(request: Request) -> Response:
        """Link header style, 50 per page, announced in X-Total-Count; `nolink` drops Link."""
        q = request.query_params
        n, page = int(q.get("n", 344)), int(q.get("page", 1))
        headers = {"X-Total-Count": str(n)}
        if page * 50 < n and not q.get("nolink"):
            headers["Link"] = f'<{request.url.path}?n={n}&page={page + 1}>; rel="next"'
        return JSONResponse(ORDERS[:n][(page - 1) * 50 : page * 50], headers=headers)

    @app.get("/stuck-cursor")
    async def stuck_cursor() -> Response:
        return JSONResponse({"data": ORDERS[:3], "next_cursor": "abc"})

    @app.get("/ignores-page")
    async def ignores_page() -> Response:
        return JSONResponse({"data": ORDERS[:10]})

    return app


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    with serve_app(api()) as url:
        yield url


@pytest.fixture
async def clients(common_env: dict) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    async with (
        asgi_client(create_collector(settings)) as collector,
        asgi_client(create_merger(settings)) as merger,
    ):
        yield collector, merger


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "completeness", "X-Step-Id": uuid.uuid4().hex}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


PAGED = {"type": "page", "size_param": "per_page", "page_size": 10}


def counts(out: dict[str, Any]) -> dict[str, Any]:
    keys = ("announced", "announced_by", "read", "outcome", "cap", "complete")
    return {k: out[k] for k in keys}


async def test_every_page_is_read_without_a_cap(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], source: str
) -> None:
    collector, _ = clients
    resp = await call(
        collector,
        "collect",
        {"source": {"kind": "http", "url": f"{source}/pages"}, "pagination": PAGED},
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["records"] == 1100 and out["pages"] == 111  # 110 full pages, then an empty one
    assert counts(out) == {
        "announced": 1100,
        "announced_by": "total",
        "read": 1100,
        "outcome": "complete",
        "cap": None,
        "complete": True,
    }


async def test_a_user_page_cap_fails_or_is_an_explicit_partial(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], source: str
) -> None:
    collector, _ = clients
    body = {
        "source": {"kind": "http", "url": f"{source}/pages"},
        "pagination": PAGED,
        "max_pages": 5,
    }
    failed = await call(collector, "collect", body)
    assert failed.status_code == 422, failed.text
    error = failed.json()
    assert error["error"] == "page_cap_reached" and error["retryable"] is False
    assert "max_pages=5" in error["message"] and "50 records read of 1100" in error["message"]

    partial = await call(collector, "collect", {**body, "on_max_pages": "partial"})
    assert partial.status_code == 200, partial.text
    out = partial.json()
    assert out["records"] == 50
    assert counts(out) == {
        "announced": 1100,
        "announced_by": "total",
        "read": 50,
        "outcome": "partial",
        "cap": "max_pages=5",
        "complete": False,
    }
    # a cap the walk does not reach changes nothing
    enough = await call(
        collector, "collect", {**body, "source": {"kind": "http", "url": f"{source}/pages?n=25"}}
    )
    assert enough.status_code == 200 and enough.json()["outcome"] == "complete"


async def test_a_missing_next_page_signal_against_an_announced_total_is_an_error(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], source: str
) -> None:
    collector, _ = clients
    link = {"type": "link_header"}
    missing = await call(
        collector,
        "collect",
        {"source": {"kind": "http", "url": f"{source}/link?nolink=1"}, "pagination": link},
    )
    assert missing.status_code == 422, missing.text
    error = missing.json()
    assert error["error"] == "pagination_signal_missing" and error["retryable"] is False
    assert error["message"].startswith(
        "the API announced 344 records (X-Total-Count) but the first page has no Link rel=next "
        "header; 50 read"
    )
    # the same source with its Link headers: every record, and the counts agree
    full = await call(
        collector,
        "collect",
        {"source": {"kind": "http", "url": f"{source}/link"}, "pagination": link},
    )
    assert full.status_code == 200, full.text
    out = full.json()
    assert out["records"] == 344 and out["pages"] == 7
    assert counts(out) == {
        "announced": 344,
        "announced_by": "header:X-Total-Count",
        "read": 344,
        "outcome": "complete",
        "cap": None,
        "complete": True,
    }

    # no pagination at all while more is announced; then the user says it is no record count
    unpaged = {"source": {"kind": "http", "url": f"{source}/pages?n=25"}}
    resp = await call(collector, "collect", unpaged)
    assert resp.status_code == 422 and resp.json()["error"] == "pagination_signal_missing"
    assert "pagination is none" in resp.json()["message"]
    ignored = await call(collector, "collect", {**unpaged, "pagination": {"total_path": "none"}})
    assert ignored.status_code == 200 and counts(ignored.json())["announced"] is None
    # a page walk ending on a short page before the announced total
    short = await call(
        collector,
        "collect",
        {
            "source": {"kind": "http", "url": f"{source}/pages?n=25&announce=40"},
            "pagination": PAGED,
        },
    )
    assert short.status_code == 422 and short.json()["error"] == "pagination_ended_early"
    assert "page 3 had 5 of 10 records" in short.json()["message"]
    # a total_path the user named must be there
    named = await call(
        collector,
        "collect",
        {
            "source": {"kind": "http", "url": f"{source}/pages?n=5"},
            "pagination": {"total_path": "meta.total"},
        },
    )
    assert named.status_code == 422 and named.json()["error"] == "total_not_found"


async def test_a_walk_that_would_never_end_is_refused(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], source: str
) -> None:
    collector, _ = clients
    stuck = await call(
        collector,
        "collect",
        {
            "source": {"kind": "http", "url": f"{source}/stuck-cursor"},
            "pagination": {"type": "cursor", "cursor_path": "next_cursor"},
        },
    )
    assert stuck.status_code == 422 and stuck.json()["error"] == "pagination_loop"
    assert "cursor=abc" in stuck.json()["message"]
    same = await call(
        collector,
        "collect",
        {"source": {"kind": "http", "url": f"{source}/ignores-page"}, "pagination": PAGED},
    )
    assert same.status_code == 422 and same.json()["error"] == "pagination_loop"
    assert "page 2 repeats page 1" in same.json()["message"]


async def test_the_quality_step_checks_announced_against_read(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], source: str
) -> None:
    collector, merger = clients
    paged = {"pagination": PAGED, "format": "parquet"}

    async def quality(out: dict[str, Any], checks: dict[str, Any]) -> httpx.Response:
        collected = {k: v for k, v in counts(out).items() if k != "complete"}
        body = {"files": out["files"], "checks": checks, "collected": collected}
        return await call(merger, "quality_check", body)

    exact = (
        await call(
            collector,
            "collect",
            {"source": {"kind": "http", "url": f"{source}/pages?n=25"}, **paged},
        )
    ).json()
    passed = await quality(exact, {"row_count_min": 1})
    assert passed.status_code == 200, passed.text
    assert passed.json()["results"][-1] == {
        "check": "announced_matches",
        "passed": True,
        "observed": 25,
        "expected": 25,
        "announced_by": "total",
    }

    # more records than announced: the collect keeps them, the quality step refuses the batch
    over = (
        await call(
            collector,
            "collect",
            {"source": {"kind": "http", "url": f"{source}/pages?n=25&announce=20"}, **paged},
        )
    ).json()
    assert over["read"] == 25 and over["announced"] == 20
    failed = await quality(over, {})
    assert failed.status_code == 422 and failed.json()["error"] == "quality_failed"
    result = failed.json()["details"]["results"][-1]
    assert result["check"] == "announced_matches" and result["passed"] is False
    assert (result["observed"], result["expected"]) == (25, 20)

    # an explicit partial is not a mismatch by default, but can be checked on demand
    partial = (
        await call(
            collector,
            "collect",
            {
                "source": {"kind": "http", "url": f"{source}/pages?n=25"},
                **paged,
                "max_pages": 1,
                "on_max_pages": "partial",
            },
        )
    ).json()
    assert (await quality(partial, {})).status_code == 200
    asked = await quality(partial, {"announced_matches": True})
    assert asked.status_code == 422 and asked.json()["error"] == "quality_failed"
    # off on request
    assert (await quality(over, {"announced_matches": False})).status_code == 200
