"""The `merge` action's body: what to merge, how, and into which destination."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agents.base.actions import ActionBody
from agents.base.tabular.inputs import FileRefs
from agents.data_merger.contracts import SchemaContract
from agents.data_merger.merging import MergeSpec, MergeStrategy, WriteDisposition

DestinationKind = Literal["delta", "parquet", "postgres", "duckdb"]


class DedupSort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="column deciding which of several rows with one key wins")
    order: Literal["asc", "desc"] = Field(
        "desc", description="desc keeps the row with the largest value, asc the smallest"
    )


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: DestinationKind | None = Field(
        None,
        description="delta: a Delta Lake table at DATA_ROOT/datasets/<dataset>/ (the default "
        "for a new dataset); parquet: the platform's earlier Parquet dataset format, kept for "
        "datasets that already use it (the default for those); postgres: a table in an "
        "AGENT_TARGET_SCHEMAS schema; duckdb: a table in a DuckDB file under DATA_ROOT/duckdb/",
    )
    table: str | None = Field(None, description="table name (postgres, duckdb; default: dataset)")
    db_schema: str | None = Field(
        None,
        alias="schema",
        description="postgres: one of AGENT_TARGET_SCHEMAS (default: the first), never the "
        "platform's own; duckdb: a schema in the file (default: main)",
    )
    path: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,199}\.duckdb$",
        description="duckdb: the database file, relative to DATA_ROOT/duckdb/ (default: "
        "<dataset>.duckdb)",
    )

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> Destination:
        if self.path is not None and self.kind != "duckdb":
            raise ValueError("path is for kind duckdb only")
        if (self.table or self.db_schema) and self.kind not in ("postgres", "duckdb"):
            raise ValueError("table and schema are for kinds postgres and duckdb only")
        return self


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
        description="append: add rows; replace: the batch becomes the dataset; merge: by "
        "primary_key, with `strategy`",
    )
    strategy: MergeStrategy = Field(
        "upsert",
        description="merge only. upsert: a row replaces the one with its key; scd2: a changed "
        "key gets a new version (_valid_from, _valid_to, _is_current) and the old one is closed",
    )
    retire_absent: bool = Field(
        True,
        description="scd2: the batch is a full extract, so a current key it lacks is closed "
        "(dlt's default); false for incremental batches",
    )
    primary_key: list[str] | None = Field(
        None,
        validate_default=True,
        description="key columns; required for merge, where a new row with a known key "
        "replaces the old one (scd2: the natural key)",
    )
    dedup_sort: DedupSort | None = Field(
        None, description="among batch rows sharing a key, which one wins (default: the last)"
    )
    hard_delete: str | None = Field(
        None,
        description="column marking rows to delete (merge; scd2: to close): true, or any value "
        "for a non-boolean",
    )
    schema_contract: SchemaContract = Field(
        default_factory=SchemaContract,
        description="what the load may change in the table's schema: evolve | freeze | "
        "discard_row | discard_value, for all, or per entity {tables, columns, data_type}",
    )
    destination: Destination = Field(
        default_factory=Destination,
        validation_alias=AliasChoices("destination", "target"),
        description="where the dataset lives (`target` is the earlier name of this field)",
    )

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
        if self.strategy == "scd2" and self.write_disposition != "merge":
            raise ValueError("strategy 'scd2' is a merge strategy: set write_disposition merge")
        return self

    def spec(self) -> MergeSpec:
        """The merge semantics of this request."""
        return MergeSpec(
            disposition=self.write_disposition,
            primary_key=list(self.primary_key or []),
            dedup_column=self.dedup_sort.column if self.dedup_sort else None,
            dedup_descending=(self.dedup_sort.order == "desc") if self.dedup_sort else True,
            hard_delete=self.hard_delete,
            strategy=self.strategy if self.write_disposition == "merge" else "upsert",
            retire_absent=self.retire_absent,
        )
