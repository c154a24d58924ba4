"""The collector's actions: `collect` from an HTTP API, files, PostgreSQL or a Redis stream;
`commit_state` / `get_state` for the durable cursor; `ack_stream` after the merge."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.context import ActionContext
from agents.base.http_retry import RateLimitSpec
from agents.base.sources.models import FileSource, HttpSource, PostgresSource
from agents.data_collector.autodetect import AUTO, first_page_hook
from agents.data_collector.cursor import CursorState
from agents.data_collector.files import collect_files
from agents.data_collector.pg_tables import PlanTablesBody, plan_tables
from agents.data_collector.postgres import collect_postgres
from agents.data_collector.rest import Incremental, Pagination, collect_rest
from agents.data_collector.state import (
    STATE_KEY_PATTERN,
    StoredState,
    holds_nul,
    load_state,
    save_state,
)
from agents.data_collector.streams import (
    ENTRY_ID_PATTERN,
    RedisStreamSource,
    ack_stream,
    collect_stream,
)

registry = ActionRegistry("data-collector")

# The connector's `Source` union stays http/file/postgres: it does not test or describe streams.
CollectSource = Annotated[
    HttpSource | FileSource | PostgresSource | RedisStreamSource, Field(discriminator="kind")
]
StateKey = Annotated[
    str,
    Field(
        pattern=STATE_KEY_PATTERN,
        description="name of the source's durable state (letters, digits, _ . : / @ -)",
        examples=["orders-api"],
    ),
]
EntryId = Annotated[str, Field(pattern=ENTRY_ID_PATTERN, examples=["1732700000000-0"])]


class CollectBody(ActionBody):
    """What to collect and from where it continues."""

    source: CollectSource = Field(
        description="the source: kind http, file, postgres or redis_stream"
    )
    cursor: CursorState | None = Field(
        None,
        description="the cursor the previous collect of this source returned (wins over "
        "state_key); a redis_stream continues from its consumer group instead",
    )
    state_key: StateKey | None = Field(
        None,
        description="load the cursor committed under this key (commit_state) when no cursor "
        "is given",
    )
    incremental: Incremental | None = Field(
        None, description="incremental collection; files default to {field: mtime}"
    )
    pagination: Pagination | Literal["auto"] = Field(
        default_factory=lambda: Pagination(),
        description="http: how the API paginates; `auto`: detected from the first page by the "
        "source-detection model (the rules without a registry), reported under `autodetect`",
    )
    records_path: str | None = Field(
        None,
        description="http: dotted path of the record list in each page (default: the rules' "
        "guess); `auto`: detected from the first page like `pagination: auto`",
    )
    format: Literal["ndjson", "parquet"] = Field(
        "ndjson",
        description="http, redis_stream: file format (postgres always writes Parquet)",
    )
    rate_limit: RateLimitSpec | None = Field(None, description="http: request rate limit")
    max_pages: int | None = Field(
        None,
        ge=1,
        description="http: read at most this many pages (default: every page); reaching it "
        "with pages left fails the collect (page_cap_reached) unless on_max_pages is partial",
    )
    on_max_pages: Literal["fail", "partial"] = Field(
        "fail",
        description="http: what reaching max_pages does: fail, or end the collect with outcome "
        "partial (complete false, cap named)",
    )
    max_attempts: int = Field(4, ge=1, le=20, description="http: attempts per page")
    columns: list[str] | None = Field(None, description="postgres: columns (default: all)")
    chunk_size: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="postgres: rows per Parquet chunk; http: records per staged file (whole "
        "pages, at most 64 MiB)",
    )
    concurrency: int = Field(4, ge=1, le=64, description="files: parallel copies")
    max_files: int | None = Field(
        None, ge=1, description="files: at most this many per run (oldest first with mtime)"
    )
    label: dict[str, Any] | None = Field(
        None,
        description="returned unchanged as the output's `label`: tells a fan-out after a "
        "fanned-out collect which item each output is (sql_database: the table's plan)",
    )


@registry.action(
    "collect",
    CollectBody,
    example={
        "source": {"kind": "file", "url": "samples/test", "glob": "*.csv"},
        "incremental": {"field": "mtime", "lag": 60},
        "state_key": "test_orders",
    },
    description="pull new data from a source into the run dir; returns manifests and a cursor",
)
async def collect(body: CollectBody, ctx: ActionContext) -> dict[str, Any]:
    """Collect from the source into the step's run dir.

    Returns `{kind, files: [{uri, bytes, sha256, ...}], count, bytes, announced,
    announced_by, read, outcome, cap, complete, cursor, state_key, cursor_from}` (the counts:
    agents/base/completeness.py): files sources add `name, source_path, modified_at` per file
    (sorted by name); HTTP files (runs of whole pages) add `rows, page, last_page` (and
    `records, pages, requests, duplicates_skipped`); PostgreSQL chunks add `rows, schema`;
    a Redis stream adds `entry_ids, rows, redelivered, ...` and its `count` is the number of
    entries (see streams.py). `cursor` is the state to pass back as `cursor`, or to `commit_state`.
    `cursor_from` says where the starting cursor came from: "body", "state" or null.
    """
    previous, cursor_from = body.cursor, "body" if body.cursor is not None else None
    # A stream's position lives in its consumer group: a stored cursor would not be used.
    stateful = not isinstance(body.source, RedisStreamSource)
    if previous is None and body.state_key is not None and stateful:
        async with ctx.sessionmaker() as session:
            stored = await load_state(session, key=body.state_key)
        if stored is not None:
            previous, cursor_from = CursorState.model_validate(stored.cursor), "state"
    result = await _collect(body, previous, ctx)
    out = {**result, "state_key": body.state_key, "cursor_from": cursor_from}
    return {**out, "label": body.label} if body.label is not None else out


registry.action(
    "plan_tables",
    PlanTablesBody,
    example={
        "source": {"kind": "postgres", "url_env": "SHOP_DB_URL", "db_schema": "public"},
        "dataset_prefix": "shop_",
        "state_key": "shop",
    },
    description="the tables of a PostgreSQL schema to load, one item each (sql_database)",
    read_only=True,
)(plan_tables)


async def _collect(
    body: CollectBody, previous: CursorState | None, ctx: ActionContext
) -> dict[str, Any]:
    source = body.source
    if body.columns is not None and not isinstance(source, PostgresSource):
        # Refused rather than ignored: the files and pages are collected whole.
        raise AgentError(
            f"columns: only a postgres source selects columns (this one is {source.kind})",
            code="unsupported_option",
        )
    if isinstance(source, RedisStreamSource):
        if body.incremental is not None:
            raise AgentError(
                "a redis_stream continues from its consumer group; incremental does not apply",
                code="invalid_cursor",
            )
        return await collect_stream(source, ctx, output_format=body.format)
    if isinstance(source, FileSource):
        inc = body.incremental or Incremental(field="mtime")
        if inc.field not in ("mtime", "name"):
            raise AgentError(
                "incremental.field of a file source is 'mtime' or 'name'", code="invalid_cursor"
            )
        return await collect_files(
            source,
            ctx,
            previous=previous,
            by=inc.field,
            lag=inc.lag,
            concurrency=body.concurrency,
            max_files=body.max_files,
        )
    if isinstance(source, HttpSource):
        hook = first_page_hook(source, ctx, body.pagination, body.records_path)
        pagination = body.pagination if isinstance(body.pagination, Pagination) else Pagination()
        out = await collect_rest(
            source,
            ctx,
            pagination=pagination,
            records_path=None if body.records_path == AUTO else body.records_path,
            on_first_page=hook,
            incremental=body.incremental,
            previous=previous,
            rate_limit=body.rate_limit,
            max_pages=body.max_pages,
            on_max_pages=body.on_max_pages,
            max_attempts=body.max_attempts,
            output_format=body.format,
            chunk_size=body.chunk_size,
        )
        if hook is not None:
            out["autodetect"] = hook.report
        return out
    return await collect_postgres(
        source,
        ctx,
        incremental=body.incremental,
        previous=previous,
        columns=body.columns,
        chunk_size=body.chunk_size,
    )


class CommitStateBody(ActionBody):
    """The cursor to commit for a source, once its data has landed."""

    state_key: StateKey | None = Field(
        description="where to keep it; null: the workflow keeps no state (nothing is committed)"
    )
    cursor: dict[str, Any] | None = Field(
        description="the cursor object collect returned (usually ${steps.collect.output.cursor}); "
        "null (a collect without incremental) commits nothing and keeps the stored cursor"
    )

    @field_validator("cursor")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Refused here, as a 422 naming the field, rather than by PostgreSQL mid-transaction.
        if value is not None and holds_nul(value):
            raise ValueError("must not contain a NUL character (U+0000): jsonb cannot store it")
        return value


class GetStateBody(ActionBody):
    """Which source's state to read."""

    state_key: StateKey


def _state_out(key: str, stored: StoredState | None) -> dict[str, Any]:
    return {
        "state_key": key,
        "cursor": stored.cursor if stored else None,
        "run_id": stored.run_id if stored else None,
        "updated_at": stored.updated_at.isoformat() if stored else None,
    }


@registry.action(
    "commit_state",
    CommitStateBody,
    example={
        "state_key": "test_orders",
        "cursor": {"field": "mtime", "value": 1768465800.0, "lag": 60, "seen": ["9c659555ff84"]},
    },
    description="store the cursor of a source (the workflow's last step, after the merge)",
)
async def commit_state(body: CommitStateBody, ctx: ActionContext) -> dict[str, Any]:
    """Upsert the cursor under `state_key` (last write wins) with the committing run's id.

    Returns `{state_key, cursor, run_id, updated_at, committed}`; `committed` is false when
    there was no key or no cursor to commit (then cursor, run_id and updated_at are what is
    stored, if anything).
    """
    if body.state_key is None:
        return {"state_key": None, "cursor": None, "run_id": None, "updated_at": None,
                "committed": False}  # fmt: skip
    async with ctx.sessionmaker() as session, session.begin():
        if body.cursor is None:
            stored = await load_state(session, key=body.state_key)
            return {**_state_out(body.state_key, stored), "committed": False}
        stored = await save_state(
            session, key=body.state_key, cursor=body.cursor, run_id=ctx.run_id
        )
    return {**_state_out(body.state_key, stored), "committed": True}


@registry.action(
    "get_state",
    GetStateBody,
    example={"state_key": "test_orders"},
    description="read the committed cursor of a source",
    read_only=True,
)
async def get_state(body: GetStateBody, ctx: ActionContext) -> dict[str, Any]:
    """Returns `{state_key, cursor, run_id, updated_at}`; cursor is null before any commit."""
    async with ctx.sessionmaker() as session:
        stored = await load_state(session, key=body.state_key)
    return _state_out(body.state_key, stored)


class AckStreamBody(ActionBody):
    """The stream entries to acknowledge, after the merge stored them."""

    source: RedisStreamSource = Field(description="the redis_stream source collect read from")
    entry_ids: list[EntryId] = Field(
        max_length=1_000_000,
        description="the ids collect returned (usually ${steps.collect.output.entry_ids})",
    )


@registry.action(
    "ack_stream",
    AckStreamBody,
    example={
        "source": {
            "kind": "redis_stream",
            "url_env": "STREAM_REDIS_URL",
            "stream": "orders",
            "group": "ingestion",
            "consumer": "realtime",
        },
        "entry_ids": ["1732700000000-0", "1732700000000-1"],
    },
    description="acknowledge collected stream entries (after the merge) so they are not "
    "delivered again",
)
async def ack(body: AckStreamBody, ctx: ActionContext) -> dict[str, Any]:
    """XACK the entries in the source's group. Returns `{stream, group, requested, acked}`."""
    return await ack_stream(body.source, body.entry_ids, ctx)
