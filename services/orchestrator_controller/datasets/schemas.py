"""Bodies of the datasets API: the load records a merge writes, and the versions they made."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

# The merger's dataset-name rule (agents/data_merger/actions.py MergeBody.dataset).
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"

DatasetPath = Annotated[
    str,
    Path(
        pattern=DATASET_PATTERN,
        description="the dataset's name (a workflow's `dataset` input)",
        examples=["orders"],
    ),
]


class LoadOut(BaseModel):
    """One batch a merge applied to a destination."""

    id: int
    dataset: str
    run_id: str | None = Field(description="the run whose merge step made this load")
    step_id: str | None
    kind: str = Field(description="delta, parquet, postgres or duckdb")
    destination: str = Field(description="the table's URI, schema.table, or file#table")
    write_disposition: str
    strategy: str | None
    fingerprint: str = Field(description="the batch's identity: its files' content and spec")
    inserted: int
    updated: int
    deleted: int = Field(description="rows deleted (scd2: versions closed)")
    unchanged: int
    written: int = Field(description="rows this load wrote")
    rows: int | None = Field(description="rows in the destination after the load")
    bytes: int | None = Field(description="bytes the load wrote, where the destination says")
    version: int | None = Field(description="the destination's version after the load")
    schema_: dict[str, Any] = Field(alias="schema", description="column -> type after the load")
    loaded_at: datetime


class LoadPage(BaseModel):
    dataset: str
    loads: list[LoadOut] = Field(description="newest first")


class VersionOut(BaseModel):
    """A version of a dataset's destination and the load that made it."""

    version: int
    run_id: str | None
    kind: str
    destination: str
    write_disposition: str
    inserted: int
    updated: int
    deleted: int
    rows: int | None
    loaded_at: datetime


class VersionPage(BaseModel):
    dataset: str
    versions: list[VersionOut] = Field(description="newest first")


class DatasetOut(BaseModel):
    """A dataset some merge has loaded, with its latest load."""

    dataset: str
    loads: int
    kind: str
    destination: str
    rows: int | None
    version: int | None
    last_loaded_at: datetime
    last_run_id: str | None
