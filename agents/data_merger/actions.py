"""data-merger actions: `merge` batches into a dataset or table, `quality_check` the result."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.storage import DataRoot
from agents.data_converter.inputs import FileRefs, resolve_input, scratch_dir
from agents.data_merger import dataset, postgres
from agents.data_merger.loading import (
    fingerprint,
    load_batches,
    merge_parquet_dataset,
    open_files,
    unchanged_result,
)
from agents.data_merger.merging import MergeSpec, WriteDisposition
from agents.data_merger.quality import Checks, collected_checks, run_checks

registry = ActionRegistry("data-merger")


class DedupSort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="column deciding which of several rows with one key wins")
    order: Literal["asc", "desc"] = Field(
        "desc", description="desc keeps the row with the largest value, asc the smallest"
    )


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["parquet", "postgres"] = Field(
        "parquet", description="parquet: DATA_ROOT/datasets/<dataset>/; postgres: a table"
    )
    table: str | None = Field(None, description="table name (postgres; default: the dataset)")
    db_schema: str | None = Field(
        None,
        alias="schema",
        description="PostgreSQL schema of the table: one of AGENT_TARGET_SCHEMAS (default: the "
        "first of them); never the platform's own schema",
    )


class MergeBody(ActionBody):
    batches: FileRefs = Field(
        description="batch files: URIs, manifests {'uri': ...}, step outputs {'files': [...]} "
        "or nested lists of these (usually data-converter outputs)",
    )
    dataset: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$", description="name of the target dataset"
    )
    write_disposition: WriteDisposition = Field(
        "append",
        description="append: add rows; replace: the batch becomes the dataset; merge: upsert "
        "by primary_key",
    )
    primary_key: list[str] | None = Field(
        None,
        validate_default=True,
        description="key columns; required for merge, where a new row with a known key "
        "replaces the old one",
    )
    dedup_sort: DedupSort | None = Field(
        None, description="among batch rows sharing a key, which one wins (default: the last)"
    )
    hard_delete: str | None = Field(
        None,
        description="column marking rows to delete (merge): true, or any value for a non-boolean",
    )
    target: Target = Field(default_factory=Target, description="where the dataset lives")

    @field_validator("primary_key")
    @classmethod
    def _key_for_merge(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if info.data.get("write_disposition") == "merge" and not value:
            raise ValueError("write_disposition 'merge' needs a primary_key (one or more columns)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("primary_key lists a column twice")
        return value

    @model_validator(mode="after")
    def _options_need_key(self) -> MergeBody:
        if (self.dedup_sort or self.hard_delete) and not self.primary_key:
            raise ValueError("dedup_sort and hard_delete need a primary_key")
        return self

    def spec(self) -> MergeSpec:
        """The merge semantics of this request."""
        return MergeSpec(
            disposition=self.write_disposition,
            primary_key=list(self.primary_key or []),
            dedup_column=self.dedup_sort.column if self.dedup_sort else None,
            dedup_descending=(self.dedup_sort.order == "desc") if self.dedup_sort else True,
            hard_delete=self.hard_delete,
        )


class QualityBody(ActionBody):
    files: FileRefs | None = Field(
        None, description="files to check (URIs, manifests or nested lists); or give dataset"
    )
    dataset: str | None = Field(
        None,
        description="a Parquet dataset under DATA_ROOT/datasets to check (its current version)",
    )
    checks: Checks = Field(description="the checks; every one must pass")
    collected: Completeness | None = Field(
        None,
        description="the counts of the collect these files came from (its `announced`, `read`, "
        "`outcome`...), for the announced_matches check",
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
    except (OperationalError, InterfaceError, ConnectionError, TimeoutError) as exc:
        raise AgentError(
            f"database unavailable: {_first_line(exc)}",
            code="database_unavailable",
            retryable=True,
        ) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise AgentError(
                f"database connection lost: {_first_line(exc)}",
                code="database_unavailable",
                retryable=True,
            ) from exc
        raise AgentError(f"the load was refused: {_first_line(exc)}", code="load_failed") from exc


def _first_line(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    return (str(origin).strip().splitlines() or [type(origin).__name__])[0]


@registry.action("merge", MergeBody, description="merge batches into a dataset or table")
async def merge_action(body: MergeBody, ctx: ActionContext) -> dict[str, Any]:
    """Merge batches into the dataset, all or nothing.

    Returns `{"dataset", "target", "uri" (parquet) or "table" (postgres), "version", "files",
    "rows", "inserted", "updated", "unchanged", "deleted", "written", "checksum", "schema",
    "primary_key", "write_disposition", "replayed"}`; `replayed` is true when this exact batch
    was merged before and the stored result is returned instead of merging it again.
    `written` counts the rows this merge wrote (parquet: the rows of the data file the new
    version added; postgres: the rows inserted or updated). A parquet merge with nothing to
    write keeps the version and says `written: 0`: no batch files or an append or upsert of
    zero rows (`empty_batch: true`), or an upsert whose rows are all there unchanged; a new
    column is a change and is written.
    """
    root = DataRoot.from_setting(ctx.settings.data_root)
    spec = body.spec()
    if not body.batches:
        # No batch files (a micro-batch that found no new data): the dataset stays as it is,
        # whatever the disposition; a batch file with zero rows is a different thing.
        return await asyncio.to_thread(unchanged_result, root, body.dataset, spec, body.target)
    locations = [await asyncio.to_thread(resolve_input, u, ctx.settings) for u in body.batches]
    batch_id = await asyncio.to_thread(fingerprint, locations, spec)
    if body.target.kind == "parquet":
        dataset.dataset_dir(root, body.dataset)  # refuses a bad name before taking the lock
        async with (
            _database_errors(),
            dataset.locked(ctx.db_engine, f"dataset:{body.dataset}"),
        ):
            merging = asyncio.ensure_future(
                asyncio.to_thread(
                    merge_parquet_dataset, root, body.dataset, locations, spec, batch_id
                )
            )
            try:
                result = await asyncio.shield(merging)
            except asyncio.CancelledError:
                # A thread cannot be stopped: keep the lock until it has finished its commit.
                await asyncio.wait([merging])
                raise
        return jsonable_encoder(result)
    table = body.target.table or re.sub(r"[^A-Za-z0-9_]", "_", body.dataset)
    schema = postgres.target_schema(body.target.db_schema, ctx.settings.target_schemas)
    postgres.quote(table)  # a bad name is refused before any batch is read
    with scratch_dir(root) as work:
        batch, deletes = await asyncio.to_thread(load_batches, locations, spec, work)
    resource = f"table:{schema}.{table}"
    async with _database_errors(), dataset.locked(ctx.target_engine, resource) as conn:
        result = await postgres.load(
            conn,
            table=table,
            schema=schema,
            batch=batch,
            deletes=deletes,
            spec=spec,
            fingerprint=batch_id,
        )
    written = result["inserted"] + result["updated"]
    return jsonable_encoder({"dataset": body.dataset, **result, "written": written})


def _check_files(
    root: DataRoot, locations: list[str], checks: Checks
) -> tuple[int, list[dict[str, Any]]]:
    with scratch_dir(root) as work:
        return run_checks(open_files(locations, work), checks)


@registry.action(
    "quality_check", QualityBody, description="check a dataset's data quality", read_only=True
)
async def quality_check_action(body: QualityBody, ctx: ActionContext) -> dict[str, Any]:
    """Run the checks over the files or the dataset's current version.

    Returns `{"passed": true, "rows", "results": [{"check", "column"?, "passed", "observed",
    "expected"}]}`; when a check fails, the action fails with the non-retryable error
    `quality_failed` whose details carry the same results.
    """
    root = DataRoot.from_setting(ctx.settings.data_root)
    if body.dataset is None:
        assert body.files is not None
        locations = [await asyncio.to_thread(resolve_input, u, ctx.settings) for u in body.files]
        rows, results = await asyncio.to_thread(_check_files, root, locations, body.checks)
    else:
        # A merge committing meanwhile deletes the files it replaced: read the new version.
        for attempt in range(3):
            state = await asyncio.to_thread(dataset.load_state, root, body.dataset)
            if state is None:
                raise AgentError(
                    f"dataset {body.dataset!r} does not exist", code="dataset_not_found"
                )
            locations = [root.uri(p) for p in dataset.file_paths(root, body.dataset, state)]
            try:
                rows, results = await asyncio.to_thread(_check_files, root, locations, body.checks)
                break
            except FileNotFoundError as exc:
                if attempt == 2:
                    raise AgentError(
                        f"dataset {body.dataset!r} keeps changing", code="busy", retryable=True
                    ) from exc
    results += collected_checks(body.checks, body.collected)
    encoded = jsonable_encoder(results)
    passed = all(r["passed"] for r in encoded)
    if not passed:
        failed = [
            r["check"] + (f" {r['column']}" if "column" in r else "")
            for r in encoded
            if not r["passed"]
        ]
        raise AgentError(
            f"quality checks failed: {', '.join(failed)}",
            code="quality_failed",
            details={"rows": rows, "results": encoded},
        )
    return {"passed": True, "rows": rows, "results": encoded}
