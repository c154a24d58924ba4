"""data-transformer actions: `transform` runs one DuckDB query over staged Parquet inputs and
stages its result as a new Parquet file (agents.data_transformer.sandbox)."""

from __future__ import annotations

import asyncio
import posixpath
import threading
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, field_validator

from agents.base.actions import ActionBody, ActionRegistry, ActionResult
from agents.base.context import ActionContext
from agents.base.storage import DataRoot, file_manifest
from agents.base.tabular.inputs import flatten_refs
from agents.data_transformer import sandbox
from agents.data_transformer.settings import TransformerSettings
from agents.data_transformer.staging import (
    StagedFile,
    output_dir,
    publish,
    refused,
    resolve_staged,
    scratch_file,
)

registry = ActionRegistry("data-transformer")

# Input names become DuckDB view names: plain identifiers, so the SQL names them unquoted.
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
FileRefs = Annotated[list[str], BeforeValidator(flatten_refs)]
Compression = Literal["zstd", "snappy", "gzip", "lz4", "uncompressed"]

_CONVERTED = "/data/runs/adhoc/convert/3f2a9c0e1b7d4a55/0000-orders-2026-01-15.parquet"
_CUSTOMERS = "/data/runs/adhoc/convert_customers/9b1c44e0a2f35d7e/0000-customers.parquet"


class TransformBody(ActionBody):
    sql: str = Field(
        min_length=1,
        description="one DuckDB query (SELECT, WITH or FROM) over the inputs, each a view by "
        "its name; it can read nothing else: files, URLs, other databases and extensions are "
        "refused, as is any statement that is not a query",
    )
    inputs: dict[InputName, FileRefs] = Field(
        min_length=1,
        max_length=32,
        description="{name: staged Parquet files}: a URI, a manifest {'uri': ...}, a step "
        "output {'files': [...]} (a converter's) or lists of these, all under DATA_ROOT; an "
        "input's files are one view (schemas unified by column name)",
    )
    output: str = Field(
        "result",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$",
        description="the staged file's name, without .parquet",
    )
    compression: Compression = Field("zstd", description="Parquet compression codec")

    @field_validator("inputs")
    @classmethod
    def _names_apart(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # DuckDB identifiers ignore case: `Orders` and `orders` would be one view.
        seen: dict[str, str] = {}
        for name in value:
            if (other := seen.setdefault(name.lower(), name)) != name:
                raise ValueError(f"{other!r} and {name!r} differ only in case")
        return value


# One transform holds DuckDB's memory_limit; bounding how many run bounds the process.
_SLOTS: dict[int, threading.BoundedSemaphore] = {}


def _slot(settings: TransformerSettings) -> threading.BoundedSemaphore:
    return _SLOTS.setdefault(
        settings.transform_concurrency, threading.BoundedSemaphore(settings.transform_concurrency)
    )


def _bounded(settings: TransformerSettings, function: Any, /, *args: Any, **kw: Any) -> Any:
    with _slot(settings):
        return function(*args, **kw)


def _staged_inputs(body: TransformBody, ctx: ActionContext) -> dict[str, list[StagedFile]]:
    staged: dict[str, list[StagedFile]] = {}
    for name, refs in body.inputs.items():
        staged[name] = [
            resolve_staged(ref, ctx.settings, f"inputs.{name}[{index}]")
            for index, ref in enumerate(refs)
        ]
    return staged


class TransformResult(ActionResult):
    """What `transform` staged: one Parquet file (`files`, as a convert lists its own, so a
    merge takes it as its batches), or none when every input was empty."""

    uri: str | None = Field(description="the staged file; None when nothing was staged")
    rows: int
    schema_: dict[str, str] = Field(alias="schema", description="column name to type name")
    files: list[dict[str, Any]] = Field(description="the staged file's manifest, or none")
    inputs: dict[str, Any] = Field(description="by input name: its files and rows")


def _transform(
    body: TransformBody, ctx: ActionContext, settings: TransformerSettings
) -> TransformResult:
    staged = _staged_inputs(body, ctx)
    root = DataRoot.from_setting(settings.data_root)
    seed = ctx.idempotency_key or body.model_dump(mode="json")
    target = posixpath.join(output_dir(root, ctx.run_id, ctx.step_id, seed), body.output)
    target += ".parquet"
    limits = sandbox.Limits(
        max_rows=settings.transform_max_rows,
        memory_limit=settings.transform_memory_limit,
        threads=settings.transform_threads,
        timeout_s=settings.transform_timeout_s,
    )
    with scratch_file(root, "result.parquet") as local:
        outcome = sandbox.run(body.sql, staged, local, limits=limits, compression=body.compression)
        publish(root, local, target)
    uri = root.uri(target)
    manifest = file_manifest(uri, rows=outcome.rows, schema=outcome.schema)
    return TransformResult(
        uri=uri, rows=outcome.rows, schema_=outcome.schema, files=[manifest], inputs=outcome.inputs
    )


@registry.action(
    "transform",
    TransformBody,
    example={
        "sql": "SELECT o.*, c.segment FROM orders o JOIN customers c USING (customer)",
        "inputs": {"orders": [_CONVERTED], "customers": [_CUSTOMERS]},
        "output": "orders_by_segment",
    },
    description="run a DuckDB query over staged Parquet and stage its result",
)
async def transform_action(body: TransformBody, ctx: ActionContext) -> TransformResult:
    """Run `sql` over the inputs and stage the result as one Parquet file in this step's folder.

    Returns `{"uri", "rows", "schema", "files": [{"uri", "rows", "bytes", "sha256", "schema"}],
    "inputs": {name: {"files", "rows"}}}`: `files` lets a merge take the output as its batches,
    as it takes a convert's. Inputs that all have no files (an incremental run that found
    nothing new) give `files: []` without running the query; only some empty is a 422 naming
    the input, since its columns are unknown. A bad query is a 422 naming `sql` with DuckDB's
    message; a result over AGENT_TRANSFORM_MAX_ROWS, or a query over the memory limit, a 413.
    """
    assert isinstance(ctx.settings, TransformerSettings)  # app.create_app makes it one
    settings = ctx.settings
    if len(body.sql) > settings.transform_max_sql_chars:
        raise refused(
            "sql",
            f"{len(body.sql)} characters is over the limit of {settings.transform_max_sql_chars} "
            "(AGENT_TRANSFORM_MAX_SQL_CHARS)",
            code="sql_too_long",
        )
    empty = [name for name, refs in body.inputs.items() if not refs]
    if len(empty) == len(body.inputs):
        return TransformResult(uri=None, rows=0, schema_={}, files=[], inputs={})
    if empty:
        raise refused(
            f"inputs.{empty[0]}",
            "has no files while other inputs have some; its columns are unknown",
            code="empty_input",
        )
    result: TransformResult = await asyncio.to_thread(
        _bounded, settings, _transform, body, ctx, settings
    )
    return result
