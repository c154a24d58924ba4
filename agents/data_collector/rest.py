"""Collecting from REST APIs: pagination, incremental cursor, rate limit, retries per page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
import stamina
from aiolimiter import AsyncLimiter
from pydantic import Field

from agents.base.actions import ActionBody, AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.http_retry import (
    PermanentError,
    RateLimitSpec,
    TransientError,
    as_agent_error,
    backoff_hook,
    check_status,
    classify_exception,
)
from agents.base.security import (
    AppliedAuth,
    HostUnresolvable,
    apply_auth,
    check_url,
    guarded_stream,
    http_client,
    origin,
    redact_url,
)
from agents.base.sources.models import HttpSource
from agents.base.sources.payloads import decode_json, find_records, get_path
from agents.base.storage import DataRoot
from agents.data_collector import pacing as pacing_
from agents.data_collector import staging, walk
from agents.data_collector.cursor import CursorState, IncrementalWindow, record_key, to_json


class Pagination(ActionBody):
    """How the API splits its results into pages."""

    type: Literal["none", "page", "offset", "cursor", "next_link", "link_header"] = Field(
        "none",
        description="page: page number; offset: record offset; cursor: token from the body; "
        "next_link: next URL from the body; link_header: RFC 8288 Link rel=next",
    )
    page_param: str = Field("page", description="page: the page-number parameter")
    start_page: int = Field(1, ge=0, description="page: the first page number")
    offset_param: str = Field("offset", description="offset: the offset parameter")
    size_param: str | None = Field(
        None, description="page/offset: the page-size (limit) parameter, sent with page_size"
    )
    page_size: int | None = Field(
        None, ge=1, le=100_000, description="records per page; a shorter page is the last one"
    )
    cursor_param: str = Field("cursor", description="cursor: the parameter carrying the token")
    cursor_path: str = Field("next_cursor", description="cursor: where the body holds the token")
    next_path: str = Field("next", description="next_link: where the body holds the next URL")
    total_path: str | None = Field(
        None,
        description="where the API announces its record total: a dotted body path, or "
        "`header:<Name>`; default: the first found of the X-Total-Count or X-Total header, or "
        "total, total_count, totalCount, count, meta.total, meta.total_count, pagination.total "
        "in the body; `none`: the API announces none. Fewer records read than announced is an "
        "error",
    )


class Incremental(ActionBody):
    """Collect only what is new since the last run's cursor."""

    field: str = Field(
        description="http: record field (dotted path); postgres: column; files: mtime or name"
    )
    param: str | None = Field(
        None, description="http: query parameter receiving the lower bound (value - lag)"
    )
    lag: float = Field(
        0.0, ge=0, description="re-read window: seconds for time cursors, units for numbers"
    )
    key: list[str] | None = Field(
        None,
        description="fields (columns) identifying a record for boundary dedup; default: the "
        "primary key (postgres) or the whole record",
    )
    initial_value: str | int | float | None = Field(
        None, description="lower bound of the first run (no previous cursor)"
    )


# A page this large is decoded and encoded in a thread, so the event loop keeps serving.
_THREAD_BYTES = 1 << 18

# Called with the first page (response, payload, pagination, records_path); returns the
# pagination and records path for the whole collect.
FirstPageHook = Callable[
    [httpx.Response, Any, Pagination, str | None], Awaitable[tuple[Pagination, str | None]]
]


def _url_query(url: str) -> dict[str, Any]:
    """The URL's own query as params: httpx replaces a URL's query with the params it gets."""
    query = httpx.URL(url).params
    return {k: v[0] if len(v := query.get_list(k)) == 1 else v for k in query}


def _bound_param(value: Any) -> str:
    return str(to_json(value))


def _next_request(
    pagination: Pagination,
    payload: Any,
    response: httpx.Response,
    records: list[Any],
    state: dict[str, Any],
) -> tuple[str, dict[str, Any]] | None:
    """The URL and params of the next page, or None after the last one."""
    kind = pagination.type
    url: str = state["url"]
    if kind == "none" or not records:
        return None
    short = pagination.page_size is not None and len(records) < pagination.page_size
    if kind == "page":
        if short:
            return None
        state["page"] += 1
        return url, {pagination.page_param: state["page"]}
    if kind == "offset":
        if short:
            return None
        state["offset"] += len(records)
        return url, {pagination.offset_param: state["offset"]}
    if kind == "cursor":
        token = get_path(payload, pagination.cursor_path)
        if token in (None, "", False):
            return None
        return url, {pagination.cursor_param: token}
    if kind == "next_link":
        link = get_path(payload, pagination.next_path)
    else:
        link = response.links.get("next", {}).get("url")
    if not isinstance(link, str) or not link:
        return None
    nxt = response.url.join(link)
    if origin(nxt) != origin(httpx.URL(url)):
        raise AgentError(
            f"the next page link {redact_url(nxt)} leaves the source's origin",
            code="cross_origin_link",
        )
    state["url"] = str(nxt)
    return str(nxt), {}


async def _get_page(
    client: httpx.AsyncClient,
    source: HttpSource,
    url: str,
    params: dict[str, Any],
    auth: AppliedAuth,
    ctx: ActionContext,
    *,
    limiter: AsyncLimiter | None,
    attempts: int,
    pacing: pacing_.CollectPacing | None = None,
) -> tuple[Any, bool, httpx.Response, int]:
    """One page as decoded JSON, retried on transient failures, with the attempts it took.

    Also says whether the stdlib decoded it (`decode_json`), which its encoding must follow.
    """
    tries = 0
    async for attempt in stamina.retry_context(
        on=backoff_hook(60.0), attempts=attempts, timeout=None, wait_initial=0.2, wait_max=10.0
    ):
        with attempt:
            tries += 1
            if limiter is not None:
                await limiter.acquire()
            sent = await pacing.acquire() if pacing is not None else 0.0
            if pacing is not None:
                params = {**params, **pacing.page_params()}
            try:
                async with guarded_stream(
                    client,
                    url,
                    ctx.settings,
                    headers={"Accept": "application/json", **source.headers},
                    auth_headers=auth.headers,
                    params=params,
                    auth_params=auth.params,
                    timeout_s=source.timeout_s,
                ) as response:
                    if pacing is not None:
                        pacing.answered(sent, response.status_code, response.headers)
                    check_status(response, redact_url(response.url, auth.secrets))
                    raw = await response.aread()
            except (httpx.HTTPError, HostUnresolvable) as exc:
                if pacing is not None:
                    pacing.answered(sent, 0)
                raise classify_exception(exc, auth.secrets) from exc
            try:
                if len(raw) < _THREAD_BYTES:
                    payload, stdlib = decode_json(raw)
                else:
                    payload, stdlib = await asyncio.to_thread(decode_json, raw)
            except ValueError as exc:
                shown = redact_url(response.url, auth.secrets)
                raise PermanentError(f"{shown} did not return JSON") from exc
            return payload, stdlib, response, tries
    raise AssertionError("unreachable: stamina re-raises the last failure")


async def collect_rest(
    source: HttpSource,
    ctx: ActionContext,
    *,
    pagination: Pagination,
    records_path: str | None,
    incremental: Incremental | None,
    previous: CursorState | None,
    rate_limit: RateLimitSpec | None,
    max_pages: int | None,
    on_max_pages: Literal["fail", "partial"] = "fail",
    max_attempts: int,
    output_format: str,
    chunk_size: int = 10_000,
    on_first_page: FirstPageHook | None = None,
) -> dict[str, Any]:
    """Walk the pages, keep the new records, stage them in files of whole pages; manifests.

    Every page is read unless the user set `max_pages` (see walk.py for how a walk may end).
    A staged file holds consecutive pages, written once it has `chunk_size` records (or 64
    MiB); its manifest names its first and last `page`.
    `on_first_page(response, payload, pagination, records_path)` may replace the pagination
    and records path once the first page is in (`auto`, see autodetect.py).
    """
    await check_url(source.url, ctx.settings)
    auth = apply_auth(source.auth, ctx.settings, source.url)
    window = (
        IncrementalWindow(
            previous,
            field=incremental.field,
            lag=incremental.lag,
            initial=incremental.initial_value,
        )
        if incremental
        else None
    )
    params: dict[str, Any] = {**_url_query(source.url), **source.params}
    if incremental and incremental.param and window and window.lower_bound is not None:
        params[incremental.param] = _bound_param(window.lower_bound)
    if pagination.page_size and pagination.size_param:
        params[pagination.size_param] = pagination.page_size
    if pagination.type == "page":
        params[pagination.page_param] = pagination.start_page
    elif pagination.type == "offset":
        params[pagination.offset_param] = 0
    limiter = AsyncLimiter(rate_limit.requests, rate_limit.per_s) if rate_limit else None
    pacing = pacing_.for_collect(
        ctx,
        page_size=pagination.page_size,
        size_param=pagination.size_param,
        pagination_type=pagination.type,
        rate_limit_per_s=rate_limit.requests / rate_limit.per_s if rate_limit else None,
    )
    root = DataRoot.from_setting(ctx.settings.data_root)
    out = staging.collect_dir(root, ctx)
    await asyncio.to_thread(staging.reset_dir, root, out)
    state: dict[str, Any] = {"url": source.url, "page": pagination.start_page, "offset": 0}
    base_params = dict(params)
    first: tuple[str, dict[str, Any]] = (source.url, {})
    request: tuple[str, dict[str, Any]] | None = first
    files: list[dict[str, Any]] = []
    pages = records_seen = requests = 0
    batch = staging.PageBatch(output_format, chunk_size)
    guard = walk.LoopGuard()
    guard.start(first)
    announced: walk.Announced | None = None
    records: list[Any] = []
    cap: str | None = None
    async with http_client(ctx.http, verify_tls=source.verify_tls) as client:
        while request is not None:
            if max_pages is not None and pages >= max_pages:
                if on_max_pages == "fail":
                    raise walk.cap_reached(max_pages, read=records_seen, announced=announced)
                cap = f"max_pages={max_pages}"
                break
            url, page_params = request
            # A next link carries its own query; other styles vary the base parameters.
            query = page_params if url != source.url else {**base_params, **page_params}
            try:
                payload, stdlib, response, tries = await _get_page(
                    client,
                    source,
                    url,
                    query,
                    auth,
                    ctx,
                    limiter=limiter,
                    attempts=max_attempts,
                    pacing=pacing,
                )
            except (TransientError, PermanentError) as exc:
                raise as_agent_error(exc, pages_done=pages) from exc
            requests += tries
            pages += 1
            if on_first_page is not None and pages == 1:
                pagination, records_path = await on_first_page(
                    response, payload, pagination, records_path
                )
                state["page"] = pagination.start_page
            try:
                records, _ = find_records(payload, records_path)
            except ValueError as exc:
                raise AgentError(f"page {pages}: {exc}", code="unexpected_payload") from exc
            found = walk.announced_total(response.headers, payload, pagination.total_path)
            if found is not None:
                announced = found
            elif pages == 1 and pagination.total_path not in (None, walk.NO_TOTAL):
                raise AgentError(
                    f"the first page has no record total at {pagination.total_path!r}",
                    code="total_not_found",
                )
            guard.page(pages, records, pagination)
            records_seen += len(records)
            new = [r for r in records if window is None or _is_new(window, incremental, r)]
            if new:
                size = len(response.content)
                if size < _THREAD_BYTES:
                    batch.add(pages, new, stdlib=stdlib, raw_bytes=size)
                else:
                    await asyncio.to_thread(batch.add, pages, new, stdlib=stdlib, raw_bytes=size)
            if batch.full:
                files.extend(await asyncio.to_thread(batch.write, root, out))
                batch = staging.PageBatch(output_format, chunk_size)
            request = _next_request(pagination, payload, response, records, state)
            if request is not None:
                guard.next(request, pages)
    if cap is None and announced is not None and records_seen < announced.count:
        raise walk.walk_ended_short(
            pagination,
            pages=pages,
            last_records=len(records),
            read=records_seen,
            announced=announced,
        )
    if batch.rows:
        files.extend(await asyncio.to_thread(batch.write, root, out))
    counts = Completeness(
        announced=announced.count if announced else None,
        announced_by=announced.by if announced else None,
        read=records_seen,
        outcome="partial" if cap else "complete",
        cap=cap,
    )
    return {
        "kind": "http",
        "url": redact_url(source.url),
        "files": files,
        "count": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "records": sum(f["rows"] for f in files),
        "records_seen": records_seen,
        "duplicates_skipped": window.duplicates if window else 0,
        "pages": pages,
        "requests": requests,
        **counts.fields(),
        "cursor": window.state() if window else None,
        "pacing": pacing.report(),
    }


def _is_new(window: IncrementalWindow, incremental: Incremental | None, record: Any) -> bool:
    assert incremental is not None
    value = get_path(record, incremental.field)
    if incremental.key:
        key = json.dumps([get_path(record, k) for k in incremental.key], default=str)
    else:
        key = record_key(record)
    return window.consider(key, value)
