"""Combining batches with a dataset's current rows: append, replace, or upsert by primary key.

Pure polars over lazy frames; the callers decide where the rows come from and go to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import polars as pl

from agents.base.actions import AgentError
from agents.base.tabular.schema import schema_names

WriteDisposition = Literal["append", "replace", "merge"]
MergeStrategy = Literal["upsert", "scd2"]
# The validity columns an scd2 merge keeps beside the data (as dlt's `_dlt_valid_from/_to`).
VALID_FROM, VALID_TO, IS_CURRENT = "_valid_from", "_valid_to", "_is_current"
SCD2_COLUMNS = (VALID_FROM, VALID_TO, IS_CURRENT)
_ORDER = "__merger_order"
_HASH = "__merger_hash"
_SLICE = 50_000


@dataclass(frozen=True)
class MergeSpec:
    """How a batch is applied to a destination.

    `strategy` matters for `merge` only. `upsert`: a batch row replaces the row with its key
    (a delete-insert on the primary key), `hard_delete` rows remove theirs. `scd2`: rows are
    never updated in place; a key whose values changed gets its current version closed
    (`_valid_to` = the load's time, `_is_current` false) and a new version inserted
    (`_valid_from` = the load's time, `_valid_to` null, `_is_current` true). A `hard_delete`
    row closes its key's current version; with `retire_absent` (dlt's default: the batch is a
    full extract) so does every current key the batch does not hold.
    """

    disposition: WriteDisposition
    primary_key: list[str]
    dedup_column: str | None
    dedup_descending: bool
    hard_delete: str | None
    strategy: MergeStrategy = "upsert"
    retire_absent: bool = True


@dataclass
class Outcome:
    """The new contents (lazy) and what changed."""

    rows: pl.LazyFrame
    inserted: int
    updated: int
    unchanged: int
    deleted: int


def concat_batches(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    """All batches as one frame (columns unified), with their arrival order remembered."""
    batch = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return batch.with_row_index(_ORDER)


def _check_key(batch: pl.LazyFrame, spec: MergeSpec) -> None:
    columns = batch.collect_schema().names()
    wanted = list(spec.primary_key)
    if spec.dedup_column:
        wanted.append(spec.dedup_column)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise AgentError(
            f"the batch has no column {', '.join(missing)} (columns: {', '.join(columns)})",
            code="missing_column",
        )
    if spec.primary_key:
        nulls = batch.select(pl.any_horizontal(pl.col(spec.primary_key).is_null()).sum()).collect()
        if nulls.item():
            raise AgentError(
                f"{nulls.item()} batch rows have a null in the primary key "
                f"{', '.join(spec.primary_key)}",
                code="null_primary_key",
            )


def deduplicate(batch: pl.LazyFrame, spec: MergeSpec) -> pl.LazyFrame:
    """One row per primary key: the one `dedup_sort` prefers, else the last to arrive."""
    _check_key(batch, spec)
    if not spec.primary_key:
        return batch.drop(_ORDER)
    key = pl.struct(spec.primary_key) if len(spec.primary_key) > 1 else pl.col(spec.primary_key)
    # n_unique holds one hash set of the keys; is_duplicated about twice that.
    keys, rows = batch.select(key.n_unique(), pl.len()).collect(engine="streaming").row(0)
    if keys == rows:
        # One row per key already (the usual batch): no pass that holds the whole batch, so
        # the rows stream from the files to the destination. Only the key columns were read.
        return batch.drop(_ORDER)
    if not spec.dedup_column:
        # The last row to arrive per key, in arrival order: a window, not a sort of the batch
        # (half the memory and a third of the time of sort + unique on millions of rows).
        last = pl.col(_ORDER) == pl.col(_ORDER).max().over(spec.primary_key)
        return batch.filter(last).drop(_ORDER)
    by = [_ORDER]
    descending = [True]
    if spec.dedup_column:
        by.insert(0, spec.dedup_column)
        descending.insert(0, spec.dedup_descending)
    ordered = batch.sort(by, descending=descending, nulls_last=True)
    return ordered.unique(subset=spec.primary_key, keep="first", maintain_order=True).drop(_ORDER)


def _delete_flag(frame: pl.LazyFrame, column: str) -> pl.Expr:
    dtype = frame.collect_schema()[column]
    # A boolean column deletes where true; any other type deletes where it holds a value.
    return pl.col(column).fill_null(False) if dtype == pl.Boolean else pl.col(column).is_not_null()


def _row_hash(frame: pl.LazyFrame, key: list[str]) -> pl.LazyFrame:
    values = [c for c in frame.collect_schema().names() if c not in key]
    if not values:
        return frame.with_columns(pl.lit(0, dtype=pl.UInt64).alias(_HASH))
    return frame.with_columns(pl.struct(values).hash(seed=0).alias(_HASH))


def _count(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect().item())


def combine(existing: pl.LazyFrame | None, batch: pl.LazyFrame, spec: MergeSpec) -> Outcome:
    """The dataset after applying `batch` (already deduplicated) with `spec`'s disposition."""
    deletes: pl.LazyFrame | None = None
    if spec.hard_delete and spec.hard_delete in batch.collect_schema().names():
        flag = _delete_flag(batch, spec.hard_delete)
        deletes = batch.filter(flag).select(spec.primary_key)
        batch = batch.filter(~flag).drop(spec.hard_delete)
    if spec.hard_delete and existing is not None:
        # A control column, never data: drop it where an earlier load stored it.
        existing = existing.drop(spec.hard_delete, strict=False)
    if existing is None or spec.disposition == "replace":
        previous = 0 if existing is None else _count(existing)
        return Outcome(batch, _count(batch), 0, 0, previous)
    if spec.disposition == "append":
        return Outcome(pl.concat([existing, batch], how="diagonal_relaxed"), _count(batch), 0, 0, 0)
    key = spec.primary_key
    marked = pl.concat(
        [
            existing.with_columns(pl.lit(0).alias(_ORDER)),
            batch.with_columns(pl.lit(1).alias(_ORDER)),
        ],
        how="diagonal_relaxed",
    )
    old = marked.filter(pl.col(_ORDER) == 0).drop(_ORDER)
    new = marked.filter(pl.col(_ORDER) == 1).drop(_ORDER)
    touched = new.select(key)
    deleted = 0
    if deletes is not None:
        deleted = _count(old.join(deletes, on=key, how="semi"))
        touched = pl.concat([touched, deletes.select(key)]).unique()
    kept = old.join(touched, on=key, how="anti")
    matched = (
        _row_hash(old, key)
        .select([*key, _HASH])
        .join(_row_hash(new, key).select([*key, _HASH]), on=key, how="inner", suffix="_new")
    )
    counts = matched.select(
        pl.len().alias("matched"), (pl.col(_HASH) != pl.col(f"{_HASH}_new")).sum().alias("changed")
    ).collect()
    matched_n, changed = int(counts["matched"][0]), int(counts["changed"][0] or 0)
    inserted = _count(new) - matched_n
    return Outcome(
        pl.concat([kept, new], how="diagonal_relaxed"),
        inserted,
        changed,
        matched_n - changed,
        deleted,
    )


def canonical_checksum(frame: pl.DataFrame, key: list[str]) -> str:
    """sha256 of the rows in a canonical form: sorted by key (or all columns), columns by name."""
    columns = sorted(frame.columns)
    frame = frame.select(columns)
    order = key or columns
    sortable = [c for c in order if frame.schema[c].is_nested() is False]
    if sortable:
        frame = frame.sort(sortable, nulls_last=True, maintain_order=True)
    digest = hashlib.sha256(json.dumps(schema_names(frame.schema), sort_keys=True).encode())
    # NDJSON has no bytes: binary columns (Avro `bytes`, Parquet binary) are hashed as hex.
    binary = [c for c in columns if frame.schema[c] == pl.Binary]
    if binary:
        frame = frame.with_columns(pl.col(c).bin.encode("hex") for c in binary)
    for offset in range(0, frame.height, _SLICE):
        digest.update(frame.slice(offset, _SLICE).write_ndjson().encode())
    return digest.hexdigest()
