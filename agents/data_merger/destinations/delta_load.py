"""One load into a Delta table: its checks, the WRITE or MERGE it makes, and its one commit.

Apart from `delta`, whose entry points (load, history, time travel, maintenance) then read on
their own; `delta`'s docstring describes what each disposition and strategy writes.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.table import TableMerger

from agents.base.actions import AgentError
from agents.data_merger.contracts import apply_contract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.delta_results import (
    FINGERPRINT,
    RESULT,
    RUN,
    STEP,
    assemble,
    data_files,
    data_files_at,
    find_commit,
)
from agents.data_merger.destinations.delta_types import (
    delta_compatible,
    polars_schema,
    recorded_key,
    stream,
    with_key_metadata,
)
from agents.data_merger.destinations.identifiers import refuse_strategy_mismatch
from agents.data_merger.merging import IS_CURRENT, SCD2_COLUMNS, VALID_FROM, VALID_TO, MergeSpec

# Merge-source control columns; never referenced by an assignment, so never in the table.
_INTERNAL = "__merger_"
_DELETE = "__merger_delete"
_ROLE = "__merger_role"
_FOUND = "__merger_found"
# Data files of about this size: small enough that a merge of a few keys rewrites a small part
# of a large table, large enough that a table of millions of rows has tens of files, not
# thousands (`maintain` compacts what loads add).
_TARGET_FILE_BYTES = 8 * 1024 * 1024
_SCD2_TYPES: dict[str, pl.DataType] = {
    VALID_FROM: pl.Datetime("us", "UTC"),
    VALID_TO: pl.Datetime("us", "UTC"),
    IS_CURRENT: pl.Boolean(),
}


class Load:
    """One load: the table as it is, the batch as the contract lets it in, one commit."""

    def __init__(
        self,
        request: LoadRequest,
        uri: str,
        storage_options: dict[str, str] | None,
        table: DeltaTable | None,
    ) -> None:
        self.request = request
        self.spec: MergeSpec = request.spec
        self.uri = uri
        self.storage_options = storage_options
        self.table = table
        self.scd2 = self.spec.disposition == "merge" and self.spec.strategy == "scd2"
        self.schema = polars_schema(table) if table is not None else None
        self.table_key = recorded_key(table) if table is not None else []
        loaded_at = request.loaded_at
        self.loaded_at = (
            loaded_at.astimezone(UTC) if loaded_at.tzinfo else loaded_at.replace(tzinfo=UTC)
        )

    def run(self) -> dict[str, Any]:
        self._check_table()
        batch = self.request.batch
        hard_delete = self.spec.hard_delete
        if hard_delete and hard_delete in batch.collect_schema().names():
            batch = batch.drop(hard_delete)  # a control column, never data
        batch = delta_compatible(batch, self.schema)
        batch, report = apply_contract(
            batch,
            self.schema,
            self.request.contract,
            table=self.request.dataset,
            ignore=frozenset(SCD2_COLUMNS),
        )
        self._check_batch(batch.collect_schema())
        self.stored: dict[str, Any] = {
            "dataset": self.request.dataset,
            "target": "delta",
            "uri": self.uri,
            "primary_key": self.table_key or list(self.spec.primary_key),
            "write_disposition": self.spec.disposition,
            "strategy": self.spec.strategy,
            "contract": report.as_dict(),
            "basis": {},
        }
        if self.table is None:
            return self._create(batch)
        if self.spec.disposition == "append":
            return self._write(batch, "append")
        if self.spec.disposition == "replace":
            self.stored["basis"]["previous_rows"] = self.table.count()
            return self._write(batch, "overwrite")
        rows = batch.collect(engine="streaming")
        deletes = self._delete_keys(rows.schema)
        if rows.height == 0 and deletes.height == 0:
            return self._nothing(rows.height)
        if self.scd2:
            return self._scd2(rows, deletes)
        return self._upsert(rows, deletes)

    # --- checks ---------------------------------------------------------------------------

    def _check_table(self) -> None:
        if self.table is None or self.schema is None:
            return
        is_scd2 = all(c in self.schema for c in SCD2_COLUMNS)
        refuse_strategy_mismatch(self.uri, is_scd2, self.scd2)
        if self.spec.disposition != "merge":
            return
        missing = [k for k in self.spec.primary_key if k not in self.schema]
        if missing:
            raise AgentError(
                f"{self.uri} has no column {', '.join(missing)} of the primary key",
                code="missing_column",
            )
        if self.table_key and sorted(self.table_key) != sorted(self.spec.primary_key):
            raise AgentError(
                f"{self.uri} is keyed by {self.table_key}; merging by "
                f"{list(self.spec.primary_key)} is refused",
                code="primary_key_mismatch",
            )

    def _check_batch(self, schema: pl.Schema) -> None:
        internal = [c for c in schema.names() if c.startswith(_INTERNAL)]
        quoted = [c for c in schema.names() if "`" in c]
        if internal or quoted:
            raise AgentError(
                f"the batch has columns a Delta merge cannot name: {', '.join(internal + quoted)}",
                code="merge_failed",
            )
        if self.spec.disposition != "merge":
            return
        if not self.spec.primary_key:
            raise AgentError("a merge needs a primary key", code="missing_column")
        missing = [k for k in self.spec.primary_key if k not in schema]
        if missing:
            raise AgentError(
                f"the batch has no column {', '.join(missing)} of the primary key",
                code="missing_column",
            )
        if self.scd2:
            managed = [c for c in SCD2_COLUMNS if c in schema]
            if managed:
                raise AgentError(
                    f"the batch holds {', '.join(managed)}, which scd2 manages itself",
                    code="merge_failed",
                )

    # --- writes ---------------------------------------------------------------------------

    def _properties(self) -> CommitProperties:
        metadata = {FINGERPRINT: self.request.fingerprint, RESULT: json.dumps(self.stored)}
        if self.request.run_id is not None:
            metadata[RUN] = self.request.run_id
        if self.request.step_id is not None:
            metadata[STEP] = self.request.step_id
        return CommitProperties(custom_metadata=metadata)

    def _create(self, batch: pl.LazyFrame) -> dict[str, Any]:
        """The first load: the batch becomes version 0 (the hard deletes have nothing to do)."""
        if self._is_empty(batch):
            return self._nothing(0)
        if self.scd2:
            batch = batch.with_columns(
                pl.lit(self.loaded_at).cast(_SCD2_TYPES[VALID_FROM]).alias(VALID_FROM),
                pl.lit(None, _SCD2_TYPES[VALID_TO]).alias(VALID_TO),
                pl.lit(True).alias(IS_CURRENT),
            )
        key = list(self.spec.primary_key) if self.spec.disposition == "merge" else []
        if key and not _in_key_order(batch, key):
            # Files in key order hold disjoint key ranges, so a later MERGE's file pruning
            # (by the source's min/max keys) rewrites only the files its keys fall in.
            batch = batch.sort(key, nulls_last=True)
        # mode "append" creates the table; "error" would fail a retry after a lost answer.
        write_deltalake(
            self.uri,
            stream(batch, key),
            mode="append",
            target_file_size=_TARGET_FILE_BYTES,
            storage_options=self.storage_options,
            commit_properties=self._properties(),
        )
        return self._committed(None, {})

    def _write(self, batch: pl.LazyFrame, mode: str) -> dict[str, Any]:
        assert self.table is not None and self.schema is not None
        empty = self._is_empty(batch)
        if empty and (mode == "append" or self.stored["basis"]["previous_rows"] == 0):
            return self._nothing(0)
        before, files = self.table.version(), data_files(self.table)
        new = [c for c in batch.collect_schema().names() if c not in self.schema]
        write_deltalake(
            self.table,
            stream(batch, []),
            mode="append" if mode == "append" else "overwrite",
            target_file_size=_TARGET_FILE_BYTES,
            # A replace keeps the table's columns (rows lacking them get nulls), as the
            # database loaders' DELETE + INSERT do, and never drops the key's field metadata.
            schema_mode="merge" if new or mode == "overwrite" else None,
            storage_options=self.storage_options,
            commit_properties=self._properties(),
        )
        return self._committed(before, files)

    def _upsert(self, rows: pl.DataFrame, deletes: pl.DataFrame) -> dict[str, Any]:
        assert self.table is not None and self.schema is not None
        key = list(self.spec.primary_key)
        self.stored["basis"]["batch_rows"] = rows.height
        source = pl.concat(
            [
                rows.with_columns(pl.lit(False).alias(_DELETE)),
                deletes.with_columns(pl.lit(True).alias(_DELETE)),
            ],
            how="diagonal",
        )
        values = [c for c in rows.columns if c not in key]
        merger = self._merger(source, key, [f"t.{_q(k)} = s.{_q(k)}" for k in key], rows.columns)
        if deletes.height:
            merger = merger.when_matched_delete(predicate=f"s.{_q(_DELETE)}")
        if values:
            merger = merger.when_matched_update(
                {_q(c): f"s.{_q(c)}" for c in values},
                predicate=f"NOT s.{_q(_DELETE)} AND ({self._differs(values)})",
            )
        merger = merger.when_not_matched_insert(
            {_q(c): f"s.{_q(c)}" for c in rows.columns}, predicate=f"NOT s.{_q(_DELETE)}"
        )
        return self._execute(merger)

    def _scd2(self, rows: pl.DataFrame, deletes: pl.DataFrame) -> dict[str, Any]:
        """Close changed, deleted (and absent) keys' current versions; insert new versions."""
        assert self.table is not None and self.schema is not None
        key = list(self.spec.primary_key)
        nulls = rows.select(pl.any_horizontal(pl.col(key).is_null()).sum()).item()
        if nulls:
            # No constraint guards an scd2 key, and a null one would never match its versions.
            raise AgentError(
                f"{nulls} batch rows have a null in the primary key {', '.join(key)}",
                code="null_primary_key",
            )
        classified, kept = self._classify(rows)
        is_new = pl.col(_FOUND).is_null()
        changed = classified.filter(~is_new & pl.col("__merger_differs"))
        inserts = classified.filter(is_new | pl.col("__merger_differs"))
        unchanged = classified.height - inserts.height
        self.stored["basis"].update({"changed": changed.height, "unchanged": unchanged})
        new_columns = [c for c in rows.columns if c not in self.schema]
        if not (
            inserts.height
            or deletes.height
            or self.spec.retire_absent
            or new_columns
            or not self.table_key
        ):
            return self._nothing(rows.height)

        data = [*rows.columns, *kept]
        merge_keys = [f"{_INTERNAL}key_{i}" for i in range(len(key))]
        at = pl.lit(self.loaded_at).cast(_SCD2_TYPES[VALID_FROM])

        def part(frame: pl.DataFrame, role: str, keyed: bool, with_values: bool) -> pl.DataFrame:
            # A close or keep row needs only its key; its other values stay null, which also
            # keeps delta-rs' schema merge from copying a new column into a closed version.
            columns = [
                pl.col(c) if with_values or c in key else pl.lit(None, self._type(c, rows)).alias(c)
                for c in data
            ]
            marks = [
                (pl.col(k) if keyed else pl.lit(None, rows.schema[k])).alias(m)
                for k, m in zip(key, merge_keys, strict=True)
            ]
            return frame.select(
                *columns,
                *marks,
                pl.lit(role).alias(_ROLE),
                at.alias(VALID_FROM),
                pl.lit(None, _SCD2_TYPES[VALID_TO]).alias(VALID_TO),
                pl.lit(True).alias(IS_CURRENT),
            )

        parts = [part(inserts, "insert", keyed=False, with_values=True)]
        parts.append(part(changed, "close", keyed=True, with_values=False))
        if deletes.height:
            parts.append(part(deletes, "close", keyed=True, with_values=False))
        if self.spec.retire_absent:
            kept_keys = classified.filter(~is_new & ~pl.col("__merger_differs"))
            parts.append(part(kept_keys, "keep", keyed=True, with_values=False))
        source = pl.concat(parts, how="vertical")

        match = [f"t.{_q(k)} = s.{_q(m)}" for k, m in zip(key, merge_keys, strict=True)]
        match.append(f"t.{_q(IS_CURRENT)}")
        close = {_q(VALID_TO): f"s.{_q(VALID_FROM)}", _q(IS_CURRENT): "false"}
        merger = self._merger(source, key, match, data).when_matched_update(
            close, predicate=f"s.{_q(_ROLE)} = 'close'"
        )
        merger = merger.when_not_matched_insert(
            {_q(c): f"s.{_q(c)}" for c in [*data, *SCD2_COLUMNS]},
            predicate=f"s.{_q(_ROLE)} = 'insert'",
        )
        if self.spec.retire_absent:
            # No source row for these, so the load's time is a literal.
            stamp = self.loaded_at.strftime("'%Y-%m-%dT%H:%M:%S.%fZ'")
            merger = merger.when_not_matched_by_source_update(
                {_q(VALID_TO): stamp, _q(IS_CURRENT): "false"}, predicate=f"t.{_q(IS_CURRENT)}"
            )
        return self._execute(merger)

    def _classify(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        """The batch rows joined to their keys' current versions: `__merger_found` (null for a
        new key), `__merger_differs`, and the values of the table's columns the batch lacks
        (a new version keeps them from the one it supersedes); and those columns' names."""
        assert self.table is not None and self.schema is not None
        key = list(self.spec.primary_key)
        compared = [c for c in rows.columns if c not in key and c in self.schema]
        new = [c for c in rows.columns if c not in key and c not in self.schema]
        kept = [c for c in self.schema if c not in rows.columns and c not in SCD2_COLUMNS]
        old = {c: f"{_INTERNAL}old_{i}" for i, c in enumerate(compared)}
        current = (
            pl.scan_delta(self.table)
            .filter(pl.col(IS_CURRENT))
            .select(*key, *[pl.col(c).alias(o) for c, o in old.items()], *kept)
            .with_columns(pl.lit(True).alias(_FOUND))
        )
        differs = [pl.col(c).ne_missing(pl.col(o)) for c, o in old.items()]
        differs += [pl.col(c).is_not_null() for c in new]
        flag = pl.any_horizontal(differs) if differs else pl.lit(False)
        classified = (
            rows.lazy()
            .join(current, on=key, how="left", nulls_equal=False)
            .with_columns(flag.fill_null(False).alias("__merger_differs"))
            .drop(list(old.values()))
            .collect(engine="streaming")
        )
        return classified, kept

    def _merger(
        self, source: pl.DataFrame, key: list[str], match: list[str], columns: list[str]
    ) -> TableMerger:
        assert self.table is not None and self.schema is not None
        arrow = source.to_arrow()
        new = [c for c in columns if c not in self.schema]
        record_key = not self.table_key
        if record_key:
            arrow = arrow.cast(with_key_metadata(arrow.schema, key))
        return self.table.merge(
            arrow,
            " AND ".join(match),
            source_alias="s",
            target_alias="t",
            # Schema merge only when the table's schema changes: new columns or the key's
            # field metadata (delta-rs then commits the schema even if no row changes).
            merge_schema=bool(new) or record_key,
            # Not streamed: delta-rs then prunes the target files by the source's key range
            # (the source is the changed batch, in memory already).
            streamed_exec=False,
            commit_properties=self._properties(),
        )

    def _execute(self, merger: TableMerger) -> dict[str, Any]:
        assert self.table is not None
        before = self.table.version()
        files = data_files(self.table)
        metrics = merger.execute()
        if self.table.version() == before:
            # delta-rs commits nothing when no row and no column changed.
            return self._result(before, "MERGE", metrics, self.table, 0)
        return self._committed(before, files)

    def _committed(self, before: int | None, files: dict[str, int]) -> dict[str, Any]:
        """The result of the commit this load just made (`before`: the version it read, and
        `files` that version's files)."""
        after = DeltaTable(self.uri, storage_options=self.storage_options)
        entry = find_commit(after, self.request.fingerprint, 10)
        if entry is None:
            raise AgentError(
                f"the commit to {self.uri} is not in its history", code="busy", retryable=True
            )
        version = int(entry["version"])
        if before is not None and before != version - 1:
            # delta-rs rebased the commit over another writer's: diff the version below ours.
            files = data_files_at(self.uri, self.storage_options, version - 1)
        added = sum(size for path, size in data_files(after).items() if path not in files)
        metrics = entry.get("operationMetrics") or {}
        return self._result(version, entry.get("operation", ""), metrics, after, added)

    def _nothing(self, batch_rows: int) -> dict[str, Any]:
        """No commit: the table (if any) stays at its version."""
        self.stored["basis"].setdefault("batch_rows", batch_rows)
        self.stored["basis"].setdefault("unchanged", batch_rows)
        self.stored["basis"].setdefault("changed", 0)
        version = self.table.version() if self.table is not None else None
        return self._result(version, "", {}, self.table, 0)

    def _result(
        self,
        version: int | None,
        operation: str,
        metrics: dict[str, Any],
        table: DeltaTable | None,
        added_bytes: int,
    ) -> dict[str, Any]:
        stored = {**self.stored, "operation": operation}
        return assemble(stored, version, metrics, table, added_bytes)

    # --- helpers --------------------------------------------------------------------------

    def _delete_keys(self, schema: pl.Schema) -> pl.DataFrame:
        """The hard-delete keys, typed as the batch's key (which the contract cast)."""
        key = list(self.spec.primary_key)
        types = {k: schema[k] for k in key}
        if self.request.deletes is None:
            return pl.DataFrame(schema=types)
        keys = self.request.deletes.select(key).unique().collect(engine="streaming")
        return keys.cast(types)  # type: ignore[arg-type]

    def _differs(self, columns: list[str]) -> str:
        assert self.schema is not None
        # A column the table lacks is null there: a value in it is a change.
        terms = [
            f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})"
            if c in self.schema
            else f"(s.{_q(c)} IS NOT NULL)"
            for c in columns
        ]
        return " OR ".join(terms)

    def _type(self, column: str, rows: pl.DataFrame) -> pl.DataType:
        if column in rows.schema:
            return rows.schema[column]
        assert self.schema is not None
        return self.schema[column]

    @staticmethod
    def _is_empty(batch: pl.LazyFrame) -> bool:
        return batch.head(1).collect(engine="streaming").height == 0


def _in_key_order(batch: pl.LazyFrame, key: list[str]) -> bool:
    """Whether a one-column key already ascends (a sorted source): the sort, which holds the
    whole batch in memory, is then not needed. Reads only the key column."""
    if len(key) != 1:
        return False
    column = pl.col(key[0])
    try:
        descents = batch.select((column < column.shift(1)).sum()).collect(engine="streaming")
    except pl.exceptions.PolarsError:  # a key type without an order (e.g. a struct)
        return False
    return bool(descents.item() == 0)


def _q(column: str) -> str:
    # Unquoted names are lower-cased by delta-rs' SQL parser; backticks keep them as they are.
    return f"`{column}`"
