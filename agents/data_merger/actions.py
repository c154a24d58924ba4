"""data-merger actions: `merge` batches into a dataset or table, `quality_check` the result."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import polars as pl
from deltalake import DeltaTable
from fastapi.encoders import jsonable_encoder
from pydantic import Field, model_validator
from sqlalchemy.exc import DBAPIError

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.context import ActionContext
from agents.base.quality.actions import (
    QualityFields,
    QualityResult,
    check_files,
    check_locations,
    verdict,
)
from agents.base.storage import DataRoot, file_manifest
from agents.base.tabular.inputs import FileRefs, publish, resolve_input, scratch_dir
from agents.base.tabular.schema import schema_names
from agents.data_merger import children as child_tables
from agents.data_merger import dataset
from agents.data_merger.bodies import MergeBody
from agents.data_merger.contracts import SchemaContract
from agents.data_merger.destinations import LoadRequest, delta, postgres
from agents.data_merger.loading import (
    fingerprint,
    merge_parquet_dataset,
    nothing_loaded,
    prepare,
)
from agents.data_merger.merging import MergeSpec
from agents.data_merger.records import record_load
from shared.db.errors import is_unavailable

registry = ActionRegistry("data-merger")


class QualityBody(QualityFields):
    files: FileRefs | None = Field(
        None, description="files to check (URIs, manifests or nested lists); or give dataset"
    )
    dataset: str | None = Field(
        None,
        description="a dataset under DATA_ROOT/datasets (Delta or the earlier Parquet format) "
        "to check: its current version",
    )

    @model_validator(mode="after")
    def _one_source(self) -> QualityBody:
        if (self.files is None) == (self.dataset is None):
            raise ValueError("give either files or dataset")
        return self


@contextlib.asynccontextmanager
async def _database_errors() -> AsyncIterator[None]:
    """Database failures as AgentErrors: retryable when the database is away, else refused."""
    try:
        yield
    except (DBAPIError, ConnectionError, TimeoutError) as exc:
        if is_unavailable(exc):  # every connection or timeout error is, besides SQLSTATEs
            raise AgentError(
                f"database unavailable: {_first_line(exc)}",
                code="database_unavailable",
                retryable=True,
            ) from exc
        raise AgentError(f"the load was refused: {_first_line(exc)}", code="load_failed") from exc


def _first_line(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    return (str(origin).strip().splitlines() or [type(origin).__name__])[0]


# The AWS_* variables fsspec (s3fs, botocore) reads for DATA_ROOT, handed to delta-rs, which
# does not read all of them from the environment itself (an endpoint, plain http).
_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ALLOW_HTTP",
)


def _storage_options(root: DataRoot) -> dict[str, str] | None:
    """delta-rs options for DATA_ROOT's store; credentials come from the same AWS_* variables."""
    if root.protocol in ("file", "local"):
        return None
    options = {name: os.environ[name] for name in _AWS_VARIABLES if name in os.environ}
    if "AWS_REGION" not in options and "AWS_DEFAULT_REGION" in os.environ:
        options["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    # Writers to one table are serialised by the advisory lock, so S3's lack of an atomic
    # rename (delta-rs' reason for a locking provider) cannot bite.
    options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
    return options


def _kind(root: DataRoot, body: MergeBody) -> str:
    """The destination kind: as asked, else the legacy Parquet format for a dataset that
    already has it, else Delta."""
    legacy = dataset.load_state(root, body.dataset) is not None
    if body.destination.kind == "delta" and legacy:
        raise AgentError(
            f"dataset {body.dataset!r} is in the earlier Parquet format; a Delta table cannot "
            "share its folder: load into a new dataset name (or leave destination.kind out)",
            code="destination_conflict",
            status_code=409,
        )
    if body.destination.kind is not None:
        return body.destination.kind
    return "parquet" if legacy else "delta"


def _refuse_for_parquet(body: MergeBody, kind: str) -> None:
    if kind != "parquet":
        return
    if body.strategy == "scd2" or body.schema_contract != SchemaContract():
        raise AgentError(
            f"dataset {body.dataset!r} is in the earlier Parquet format, which has no scd2 and "
            "no schema contracts; load into a new dataset (Delta) for them",
            code="unsupported_destination",
        )


Requester = Callable[[pl.LazyFrame, pl.LazyFrame | None, str], LoadRequest]


def _load_in_thread(
    root: DataRoot,
    locations: list[str],
    spec: MergeSpec,
    request: Requester,
    load: Callable[[LoadRequest], dict[str, Any]],
) -> dict[str, Any]:
    with scratch_dir(root) as work:
        batch, deletes = prepare(locations, spec, work)
        return load(request(batch, deletes, work))


async def _shielded(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a blocking load in a thread; cancelled, still wait for it (a thread cannot be
    stopped, and the caller must keep its lock until the commit is done)."""
    running = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


@registry.action(
    "merge",
    MergeBody,
    example={
        "batches": ["/data/runs/adhoc/convert/0000-orders.parquet"],
        "dataset": "orders",
        "write_disposition": "merge",
        "primary_key": ["order_id"],
    },
    description="merge batches into a dataset or table",
)
async def merge_action(body: MergeBody, ctx: ActionContext) -> dict[str, Any]:
    """Merge batches into the dataset's destination, all or nothing, exactly once.

    Returns `{"dataset", "target" (the kind), "uri" (delta, parquet) or "table" (postgres,
    duckdb) and "path" (duckdb), "version", "rows", "inserted", "updated", "unchanged",
    "deleted", "written", "schema", "primary_key", "write_disposition", "strategy",
    "contract", "replayed"}` (parquet adds "files" and "checksum"); `replayed` is true when
    this exact batch was loaded before and the stored result is returned instead. A load
    with nothing to write keeps the version and says `written: 0`. Each load is recorded in
    the platform's `dataset_loads` (GET /datasets/{name}/loads). A batch converted with
    `nested: unnest` adds `"child_tables": {path: <the child table's result, same shape>}`
    (agents.data_merger.children).
    """
    root = DataRoot.from_setting(ctx.settings.data_root)
    spec = body.spec()
    dataset.dataset_dir(root, body.dataset)  # refuses a bad name before anything else
    kind = await asyncio.to_thread(_kind, root, body)
    _refuse_for_parquet(body, kind)
    if not body.batches:
        # No batch files (a micro-batch that found no new data): the dataset stays as it is,
        # whatever the disposition; a batch file with zero rows is a different thing.
        return await asyncio.to_thread(nothing_loaded, root, body, kind, _storage_options(root))
    locations = [await asyncio.to_thread(resolve_input, u, ctx.settings) for u in body.batches]
    # Child tables of unnested batches (convert's nested: unnest) load next to the parent;
    # their files are part of what identifies the batch (a changed list may leave the root
    # rows as they were).
    children = await asyncio.to_thread(
        child_tables.find_children, body.batches, locations, ctx.settings
    )
    child_tables.refuse(children, kind, spec, body.dataset)
    identified = [*locations, *(children.files() if children else [])]
    batch_id = await asyncio.to_thread(fingerprint, identified, spec)

    def request(batch: pl.LazyFrame, deletes: pl.LazyFrame | None, work: str) -> LoadRequest:
        return LoadRequest(
            dataset=body.dataset,
            batch=batch,
            deletes=deletes,
            spec=spec,
            fingerprint=batch_id,
            contract=body.schema_contract,
            run_id=ctx.run_id,
            step_id=ctx.step_id,
            workdir=work,
        )

    if kind == "postgres":
        result = await _load_postgres(body, ctx, root, locations, request, children)
    else:
        if kind == "parquet":
            resource = f"dataset:{body.dataset}"

            def call() -> dict[str, Any]:
                return merge_parquet_dataset(root, body.dataset, locations, spec, batch_id)
        elif kind == "delta":
            resource = f"dataset:{body.dataset}"
            uri = root.uri(dataset.dataset_dir(root, body.dataset))
            options = _storage_options(root)

            def call() -> dict[str, Any]:
                return _load_in_thread(
                    root,
                    locations,
                    spec,
                    request,
                    lambda r: child_tables.load_delta(r, root, uri, options, children),
                )
        else:
            path, table, schema = _duckdb_target(root, body)
            resource = f"duckdb:{path}"

            def call() -> dict[str, Any]:
                return _load_in_thread(
                    root,
                    locations,
                    spec,
                    request,
                    lambda r: child_tables.load_duckdb(r, path, table, schema, children),
                )

        async with _database_errors(), dataset.locked(ctx.db_engine, resource):
            result = await _shielded(call)
        result = {"strategy": spec.strategy, **result}
    encoded: dict[str, Any] = jsonable_encoder(result)
    async with _database_errors():
        await record_load(
            ctx.sessionmaker, encoded, fingerprint=batch_id, run_id=ctx.run_id, step_id=ctx.step_id
        )
    return encoded


def _duckdb_target(root: DataRoot, body: MergeBody) -> tuple[str, str, str]:
    if root.protocol not in ("file", "local"):
        raise AgentError(
            "a DuckDB destination needs a local DATA_ROOT (DuckDB writes its file in place)",
            code="unsupported_destination",
        )
    relative = body.destination.path or f"{body.dataset}.duckdb"
    table = body.destination.table or re.sub(r"[^A-Za-z0-9_]", "_", body.dataset)
    return root.path("duckdb", relative), table, body.destination.db_schema or "main"


async def _load_postgres(
    body: MergeBody,
    ctx: ActionContext,
    root: DataRoot,
    locations: list[str],
    request: Requester,
    children: child_tables.Children | None = None,
) -> dict[str, Any]:
    table = body.destination.table or re.sub(r"[^A-Za-z0-9_]", "_", body.dataset)
    schema = postgres.target_schema(body.destination.db_schema, ctx.settings.target_schemas)
    postgres.quote(table)  # a bad name is refused before any batch is read
    resource = f"table:{schema}.{table}"
    with scratch_dir(root) as work:
        batch, deletes = await asyncio.to_thread(prepare, locations, body.spec(), work)
        async with _database_errors(), dataset.locked(ctx.target_engine, resource) as conn:
            result = await child_tables.load_postgres(
                conn, request(batch, deletes, work), children, table=table, schema=schema
            )
    return {"dataset": body.dataset, **result}


def _current_files(root: DataRoot, name: str) -> list[str]:
    """The data files of the dataset's current version (Delta table or earlier format)."""
    uri = root.uri(dataset.dataset_dir(root, name))
    if DeltaTable.is_deltatable(uri, storage_options=_storage_options(root)):
        return list(DeltaTable(uri, storage_options=_storage_options(root)).file_uris())
    state = dataset.load_state(root, name)
    if state is None:
        raise AgentError(f"dataset {name!r} does not exist", code="dataset_not_found")
    return [root.uri(p) for p in dataset.file_paths(root, name, state)]


@registry.action(
    "quality_check",
    QualityBody,
    example={
        "dataset": "orders",
        "checks": {
            "row_count_min": 1,
            "not_null": ["order_id", "email"],
            "unique": ["order_id"],
            "ranges": {"amount": {"min": 0, "max": 10000}},
        },
    },
    description="check a dataset's data quality",
    read_only=True,
)
async def quality_check_action(body: QualityBody, ctx: ActionContext) -> QualityResult:
    """Run the checks over the files or the dataset's current version.

    Returns `{"passed": true, "rows", "results": [{"check", "column"?, "passed", "observed",
    "expected"}]}`; when a check fails, the action fails with the non-retryable error
    `quality_failed` whose details carry the same results. Over files, this is the check the
    base-data-quality agent serves (agents.base.quality.actions).
    """
    if body.dataset is None:
        assert body.files is not None
        return await check_files(body.files, body, ctx)
    root = DataRoot.from_setting(ctx.settings.data_root)
    # A merge committing meanwhile deletes the files it replaced: read the new version.
    for attempt in range(3):
        locations = await asyncio.to_thread(_current_files, root, body.dataset)
        try:
            rows, results = await asyncio.to_thread(check_locations, root, locations, body.checks)
            break
        except FileNotFoundError as exc:
            if attempt == 2:
                raise AgentError(
                    f"dataset {body.dataset!r} keeps changing", code="busy", retryable=True
                ) from exc
    return verdict(rows, results, body)


class DeltaTableBody(ActionBody):
    dataset: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$", description="a Delta dataset's name"
    )


class MaintainBody(DeltaTableBody):
    optimize: bool = Field(True, description="compact small files into larger ones")
    vacuum_retention_hours: int | None = Field(
        168,
        ge=0,
        description="delete files no version younger than this needs (null: no vacuum); "
        "time travel to older versions ends there",
    )


class SnapshotBody(DeltaTableBody):
    version: int = Field(
        ge=0, description="the Delta version to read (GET /datasets/{name}/versions)"
    )


def _delta_uri(root: DataRoot, name: str) -> str:
    uri = root.uri(dataset.dataset_dir(root, name))
    if not DeltaTable.is_deltatable(uri, storage_options=_storage_options(root)):
        raise AgentError(f"dataset {name!r} is not a Delta table", code="dataset_not_found")
    return uri


@registry.action(
    "maintain",
    MaintainBody,
    example={"dataset": "orders", "optimize": True, "vacuum_retention_hours": 168},
    description="OPTIMIZE and VACUUM a Delta dataset",
)
async def maintain_action(body: MaintainBody, ctx: ActionContext) -> dict[str, Any]:
    """Compact the dataset's files and delete the ones no kept version needs.

    Holds the dataset's lock like a merge, so it never races one. Returns the OPTIMIZE and
    VACUUM metrics: `{"dataset", "uri", "optimize": {...}, "vacuum": {...}}`.
    """
    root = DataRoot.from_setting(ctx.settings.data_root)
    uri = await asyncio.to_thread(_delta_uri, root, body.dataset)
    async with _database_errors(), dataset.locked(ctx.db_engine, f"dataset:{body.dataset}"):
        metrics = await _shielded(
            lambda: delta.maintain(
                uri,
                _storage_options(root),
                optimize=body.optimize,
                vacuum_retention_hours=body.vacuum_retention_hours,
            )
        )
    return jsonable_encoder({"dataset": body.dataset, "uri": uri, **metrics})


@registry.action(
    "snapshot",
    SnapshotBody,
    example={"dataset": "orders", "version": 3},
    description="stage one version of a Delta dataset",
    read_only=True,
)
async def snapshot_action(body: SnapshotBody, ctx: ActionContext) -> dict[str, Any]:
    """Time travel: the rows of the dataset as version `version` held them, staged as one
    Parquet file under the step's run folder. Returns `{"dataset", "version", "files": [...]}`
    with the file's manifest (uri, rows, bytes, sha256)."""
    root = DataRoot.from_setting(ctx.settings.data_root)
    uri = await asyncio.to_thread(_delta_uri, root, body.dataset)
    target = root.path(
        root.run_dir(ctx.run_id, ctx.step_id), f"{body.dataset}-v{body.version}.parquet"
    )

    def stage() -> dict[str, Any]:
        try:
            frame = delta.read_version(uri, body.version, _storage_options(root))
            rows = frame.collect(engine="streaming")
        except Exception as exc:  # delta-rs names a version past the last one in its own way
            raise AgentError(
                f"dataset {body.dataset!r} has no version {body.version}: {exc}",
                code="version_not_found",
            ) from exc
        with scratch_dir(root) as work:
            local = f"{work}/snapshot.parquet"
            rows.write_parquet(local)
            publish(root, local, target)
        return file_manifest(root.uri(target), rows=rows.height, schema=schema_names(rows.schema))

    manifest = await asyncio.to_thread(stage)
    return {"dataset": body.dataset, "version": body.version, "files": [manifest]}
