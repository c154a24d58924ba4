"""Probing HTTP(S) sources: reachability, latency, capabilities, and the shape of their data."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from agents.base.context import ActionContext
from agents.base.security import (
    AppliedAuth,
    HostUnresolvable,
    apply_auth,
    check_url,
    guarded_stream,
    http_client,
    redact_url,
    scrub,
)
from agents.base.sources import payloads
from agents.base.sources.heuristics import (
    latency_summary,
    rate_limit_from_headers,
    recommend_http,
)
from agents.base.sources.models import HttpSource
from agents.data_connector.detection import PROBE_BYTES, detect


def unreachable(kind: str, target: str, reason: str, latency_ms: float) -> dict[str, Any]:
    """The answer for a source that could not be reached (a finding, not an error)."""
    return {
        "reachable": False,
        "kind": kind,
        "url": target,
        "reason": reason,
        "latency_ms": round(latency_ms, 3),
        "capabilities": [],
        "recommended": {"concurrency": 1, "batch_size": 100, "basis": "unreachable"},
    }


def _failure(exc: Exception, secrets: list[str]) -> str:
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    return scrub(f"{kind}: {exc}", secrets)


def _capabilities(response: httpx.Response, auth: bool) -> list[str]:
    caps = ["http", "get"]
    headers = response.headers
    fmt = payloads.sniff_format(headers.get("content-type", ""), b"")
    if fmt != "unknown":
        caps.append(fmt)
    if "next" in response.links:
        caps.append("pagination:link_header")
    if headers.get("accept-ranges", "").lower() == "bytes":
        caps.append("range")
    if "etag" in headers:
        caps.append("etag")
    if "last-modified" in headers:
        caps.append("last_modified")
    if "content-encoding" in headers:
        caps.append("compression")
    if rate_limit_from_headers(headers) is not None:
        caps.append("rate_limit_headers")
    if response.url.scheme == "https":
        caps.append("tls")
    if auth and response.status_code not in (401, 403):
        caps.append("authenticated")
    return caps


def _stream(
    client: httpx.AsyncClient, source: HttpSource, auth: AppliedAuth, ctx: ActionContext
) -> Any:
    """A GET of the source with its headers, parameters and auth, every hop checked."""
    return guarded_stream(
        client,
        source.url,
        ctx.settings,
        headers=source.headers,
        auth_headers=auth.headers,
        params=dict(source.params),
        auth_params=auth.params,
        timeout_s=source.timeout_s,
    )


async def _probe(
    client: httpx.AsyncClient,
    source: HttpSource,
    auth: AppliedAuth,
    ctx: ActionContext,
    head_bytes: int = 0,
) -> tuple[httpx.Response, float, bytes]:
    """One GET up to the response headers, its latency in ms, and the body's first bytes."""
    started = time.perf_counter()
    async with _stream(client, source, auth, ctx) as response:
        latency = (time.perf_counter() - started) * 1000.0
        head = bytearray()
        if head_bytes:
            async for chunk in response.aiter_bytes():
                head.extend(chunk)
                if len(head) >= head_bytes:
                    break
        return response, latency, bytes(head[:head_bytes])


async def test_http(source: HttpSource, ctx: ActionContext, *, probes: int) -> dict[str, Any]:
    """Reachability, latency and capabilities of an HTTP source; recommended concurrency."""
    target = redact_url(source.url)
    try:
        await check_url(source.url, ctx.settings)
    except HostUnresolvable as exc:
        return unreachable("http", target, exc.message, 0.0)
    auth = apply_auth(source.auth, ctx.settings, source.url)
    samples: list[float] = []
    response: httpx.Response | None = None
    started = time.perf_counter()
    head = b""
    async with http_client(ctx.http, verify_tls=source.verify_tls) as client:
        for i in range(probes):
            # The last probe also reads the body's head: what the source detection looks at.
            wanted = PROBE_BYTES if i == probes - 1 else 0
            try:
                response, latency, head = await _probe(client, source, auth, ctx, wanted)
            except (httpx.HTTPError, HostUnresolvable) as exc:
                elapsed = (time.perf_counter() - started) * 1000.0
                return unreachable("http", target, _failure(exc, auth.secrets), elapsed)
            samples.append(latency)
    assert response is not None
    status = response.status_code
    summary = latency_summary(samples)
    rate_limit = rate_limit_from_headers(response.headers)
    return {
        "reachable": True,
        "kind": "http",
        "url": target,
        "status_code": status,
        "ok": 200 <= status < 400,
        "authenticated": status not in (401, 403),
        "reason": None if 200 <= status < 400 else f"HTTP {status}",
        "latency_ms": summary["median_ms"],
        "latency": {**summary, "probes": len(samples)},
        "content_type": response.headers.get("content-type"),
        "capabilities": _capabilities(response, source.auth is not None),
        "rate_limit": rate_limit.as_dict() if rate_limit else None,
        "recommended": recommend_http(summary["median_ms"], rate_limit),
        "detection": detect(ctx, source.url, status, response.headers, head),
    }


async def describe_http(
    source: HttpSource, ctx: ActionContext, *, sample_bytes: int
) -> dict[str, Any]:
    """Fetch one sample of the endpoint: format, where the records are, fields, pagination."""
    target = redact_url(source.url)
    try:
        await check_url(source.url, ctx.settings)
    except HostUnresolvable as exc:
        return unreachable("http", target, exc.message, 0.0)
    auth = apply_auth(source.auth, ctx.settings, source.url)
    started = time.perf_counter()
    async with http_client(ctx.http, verify_tls=source.verify_tls) as client:
        try:
            async with _stream(client, source, auth, ctx) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > sample_bytes:
                        break
        except (httpx.HTTPError, HostUnresolvable) as exc:
            elapsed = (time.perf_counter() - started) * 1000.0
            return unreachable("http", target, _failure(exc, auth.secrets), elapsed)
    latency = (time.perf_counter() - started) * 1000.0
    truncated = len(body) > sample_bytes
    sample = bytes(body[:sample_bytes])
    content_type = response.headers.get("content-type", "")
    fmt = payloads.sniff_format(content_type, sample)
    result: dict[str, Any] = {
        "reachable": True,
        "kind": "http",
        "url": target,
        "status_code": response.status_code,
        "content_type": content_type or None,
        "format": fmt,
        "sample_bytes": len(sample),
        "truncated": truncated,
        "latency_ms": round(latency, 3),
        "rate_limit": (rl.as_dict() if (rl := rate_limit_from_headers(response.headers)) else None),
        "records_path": None,
        "sample_records": 0,
        "fields": [],
        "pagination": {"type": "link_header"} if "next" in response.links else {"type": "none"},
        "detection": detect(
            ctx, source.url, response.status_code, response.headers, sample[:PROBE_BYTES]
        ),
    }
    if response.status_code >= 400:
        result["reason"] = f"HTTP {response.status_code}"
        return result
    if fmt == "unknown" or (truncated and fmt == "json"):
        return result
    try:
        payload = await asyncio.to_thread(payloads.parse_sample, fmt, sample)
        records, path = payloads.find_records(payload)
    except ValueError as exc:
        result["reason"] = f"cannot read the sample: {exc}"
        return result
    result["records_path"] = path
    result["sample_records"] = len(records)
    result["fields"] = await asyncio.to_thread(payloads.infer_fields, records)
    if fmt == "json":
        result["pagination"] = payloads.pagination_hints(payload, response)
    return result
