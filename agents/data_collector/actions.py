"""The collector's action: `collect` from an HTTP API, a file source or a PostgreSQL table."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.context import ActionContext
from agents.data_collector.cursor import CursorState
from agents.data_collector.files import collect_files
from agents.data_collector.postgres import collect_postgres
from agents.data_collector.rest import Incremental, Pagination, collect_rest
from agents.data_connector.sources import FileSource, HttpSource, Source
from agents.data_fetch_retry.policy import RateLimitSpec

registry = ActionRegistry("data-collector")


class CollectBody(ActionBody):
    """What to collect and from where it continues."""

    source: Source = Field(description="the source: kind http, file or postgres")
    cursor: CursorState | None = Field(
        None, description="the cursor the previous collect of this source returned"
    )
    incremental: Incremental | None = Field(
        None, description="incremental collection; files default to {field: mtime}"
    )
    pagination: Pagination = Field(
        default_factory=lambda: Pagination(), description="http: how the API paginates"
    )
    records_path: str | None = Field(
        None, description="http: dotted path of the record list in each page (default: detect)"
    )
    format: Literal["ndjson", "parquet"] = Field(
        "ndjson", description="http: file format of the pages (postgres always writes Parquet)"
    )
    rate_limit: RateLimitSpec | None = Field(None, description="http: request rate limit")
    max_pages: int = Field(100, ge=1, le=100_000, description="http: pages per run at most")
    max_attempts: int = Field(4, ge=1, le=20, description="http: attempts per page")
    columns: list[str] | None = Field(None, description="postgres: columns (default: all)")
    chunk_size: int = Field(
        10_000, ge=1, le=1_000_000, description="postgres: rows per Parquet chunk"
    )
    concurrency: int = Field(4, ge=1, le=64, description="files: parallel copies")
    max_files: int | None = Field(
        None, ge=1, description="files: at most this many per run (oldest first with mtime)"
    )


@registry.action(
    "collect",
    CollectBody,
    description="pull new data from a source into the run dir; returns manifests and a cursor",
)
async def collect(body: CollectBody, ctx: ActionContext) -> dict[str, Any]:
    """Collect from the source into the step's run dir.

    Returns `{kind, files: [{uri, bytes, sha256, ...}], count, bytes, complete, cursor}`:
    files sources add `name, source_path, modified_at` per file (sorted by name); HTTP pages
    add `rows, page` (and `records, pages, requests, duplicates_skipped`); PostgreSQL chunks
    add `rows, schema`. `cursor` is the state to pass back as `cursor` next time.
    """
    source = body.source
    if isinstance(source, FileSource):
        inc = body.incremental or Incremental(field="mtime")
        if inc.field not in ("mtime", "name"):
            raise AgentError(
                "incremental.field of a file source is 'mtime' or 'name'", code="invalid_cursor"
            )
        return await collect_files(
            source,
            ctx,
            previous=body.cursor,
            by=inc.field,
            lag=inc.lag,
            concurrency=body.concurrency,
            max_files=body.max_files,
        )
    if isinstance(source, HttpSource):
        return await collect_rest(
            source,
            ctx,
            pagination=body.pagination,
            records_path=body.records_path,
            incremental=body.incremental,
            previous=body.cursor,
            rate_limit=body.rate_limit,
            max_pages=body.max_pages,
            max_attempts=body.max_attempts,
            output_format=body.format,
        )
    return await collect_postgres(
        source,
        ctx,
        incremental=body.incremental,
        previous=body.cursor,
        columns=body.columns,
        chunk_size=body.chunk_size,
    )
