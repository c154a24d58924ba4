"""The connector's actions: `test_connection` and `describe` of HTTP, file and SQL sources."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from agents.base.actions import ActionBody, ActionRegistry
from agents.base.context import ActionContext
from agents.base.security import confine_path
from agents.base.sources.files import describe_files, test_files
from agents.base.sources.models import FileSource, HttpSource, Source
from agents.base.sources.postgres import describe_postgres, test_postgres
from agents.data_connector.detection import detect
from agents.data_connector.http_probe import describe_http, test_http

registry = ActionRegistry("data-connector")


class TestConnectionBody(ActionBody):
    """Probe a source."""

    source: Source = Field(description="the source: kind http, file or postgres")
    probes: int = Field(3, ge=1, le=20, description="round trips to time (HTTP, PostgreSQL)")


class DescribeBody(ActionBody):
    """Look at what a source holds."""

    source: Source = Field(description="the source: kind http, file or postgres")
    sample_bytes: int = Field(
        1 << 20, ge=1024, le=16 << 20, description="HTTP: how much of the response to sample"
    )
    max_entries: int = Field(
        100, ge=1, le=10_000, description="files: entries listed; postgres: tables described"
    )


@registry.action(
    "test_connection",
    TestConnectionBody,
    example={
        "source": {
            "kind": "http",
            "url": "https://api.example.com/v1/orders",
            "auth": {"type": "bearer", "credential": "ORDERS_API_TOKEN"},
        },
        "probes": 3,
    },
    description="reachability, latency, capabilities and recommended concurrency of a source",
    read_only=True,
)
async def test_connection(body: TestConnectionBody, ctx: ActionContext) -> dict[str, Any]:
    """Probe the source.

    Returns `{reachable, kind, url, latency_ms, capabilities: [...], recommended: {concurrency,
    batch_size, basis}, reason}` plus kind-specific facts (HTTP status, rate limit; file count
    and bytes; PostgreSQL version and max_connections). An unreachable source is an answer with
    `reachable: false` and a `reason`; a source the security policy refuses is a 422.
    """
    source = body.source
    if isinstance(source, HttpSource):
        return await test_http(source, ctx, probes=body.probes)
    if isinstance(source, FileSource):
        confined = confine_path(source.url, ctx.settings)
        return await asyncio.to_thread(test_files, confined, source.url)
    result = await test_postgres(source, ctx, probes=body.probes)
    # A database has no probe body: the detection reads the (password-free) connection URL.
    return {**result, "detection": detect(ctx, result["url"], None, {}, b"")}


@registry.action(
    "describe",
    DescribeBody,
    example={
        "source": {"kind": "postgres", "url_env": "ORDERS_DB_URL", "db_schema": "sales"},
        "max_entries": 20,
    },
    description="what a source holds: fields and pagination, files, or tables and columns",
    read_only=True,
)
async def describe(body: DescribeBody, ctx: ActionContext) -> dict[str, Any]:
    """Describe the source's data.

    HTTP: `{format, content_type, records_path, sample_records, fields: [{name, type}],
    pagination: {type, ...}, rate_limit}`. Files: `{count, bytes, extensions, oldest/newest
    modified_at, files: [{path, bytes, modified_at}]}` for the source's glob. PostgreSQL:
    `{tables: [{schema, name, columns: [{name, type, nullable}], primary_key, estimated_rows,
    bytes}]}`. Each also carries `reachable`, `kind` and `url`.
    """
    source = body.source
    if isinstance(source, HttpSource):
        return await describe_http(source, ctx, sample_bytes=body.sample_bytes)
    if isinstance(source, FileSource):
        confined = confine_path(source.url, ctx.settings)
        return await asyncio.to_thread(
            describe_files, confined, source.url, source.glob, body.max_entries
        )
    result = await describe_postgres(source, ctx, max_tables=body.max_entries)
    return {**result, "detection": detect(ctx, result["url"], None, {}, b"")}
