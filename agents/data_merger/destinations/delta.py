"""Loading a batch into a Delta Lake table with delta-rs: one commit per load, exactly once.

Every commit a load makes carries the merger's commit metadata (`merger.fingerprint`,
`merger.run_id`, `merger.step_id`, `merger.result`); a load first looks for its fingerprint in
the table's last `HISTORY_DEPTH` commits and, found, answers from that commit without writing.
Commit metadata is fixed before delta-rs runs the operation, so `merger.result` holds what is
known then (the contract report, the key, the counts a merge source already tells) and the
rest comes from the same commit's `operationMetrics` and snapshot: a fresh load and its replay
build their result with the same code from the same commit.

- append / replace: one WRITE (`mode="append"` / `"overwrite"`), streamed as Arrow batches.
- merge, upsert: one MERGE on the primary key; the hard-delete keys ride in the same source
  with a flag, an unchanged row (null-safe `IS DISTINCT FROM` on every batch column) is not
  rewritten, and only the files holding matched keys are.
- merge, scd2: one MERGE too (the classic Delta pattern). The current versions of the batch's
  keys are read first (`pl.scan_delta`, streamed, only the compared columns) to tell new,
  changed and unchanged keys apart; the source then holds every changed key twice, once on
  its key to close the current version and once with a null merge key so it never matches and
  is inserted as the new version; unchanged keys ride along (keyed, no clause) only so that
  `retire_absent` (`when_not_matched_by_source_update` on `_is_current`) leaves them alone.

Counts: `inserted` rows (scd2: keys new to the table), `updated` rows whose values changed
(scd2: keys that got a new version), `unchanged` batch rows already there as they are,
`deleted` rows removed (scd2: current versions closed by a hard delete or by being absent),
`written` the rows the commit inserted, updated or deleted (an scd2 change counts twice: the
closed version and the new one; a replace counts the rows it dropped and the ones it wrote).

The primary key of a merged table is kept in the Delta schema itself, as field metadata
`merger.primary_key` (the column's position in the key) on each key column: delta-rs 1.6
refuses table properties outside the `delta.*` names, and field metadata rides in the MERGE's
own commit (schema merge), so recording it costs no extra commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.table import TableMerger

from agents.base.actions import AgentError
from agents.data_converter.schema import schema_names
from agents.data_merger.contracts import apply_contract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.merging import IS_CURRENT, SCD2_COLUMNS, VALID_FROM, VALID_TO, MergeSpec

# How many of the latest commits a load searches for its fingerprint.
HISTORY_DEPTH = 1000
KEY_METADATA = "merger.primary_key"
_FINGERPRINT, _RUN, _STEP, _RESULT = (
    "merger.fingerprint",
    "merger.run_id",
    "merger.step_id",
    "merger.result",
)
# Merge-source control columns; never referenced by an assignment, so never in the table.
_INTERNAL = "__merger_"
_DELETE = "__merger_delete"
_ROLE = "__merger_role"
_FOUND = "__merger_found"
_CHUNK_ROWS = 100_000
# Delta has no unsigned, 128-bit, half-float, time-of-day or interval types: the nearest type
# that holds every value (a Duration becomes its microseconds, a Time its ISO text).
_WIDER: dict[type[pl.DataType], pl.DataType] = {
    pl.UInt8: pl.Int16(),
    pl.UInt16: pl.Int32(),
    pl.UInt32: pl.Int64(),
    pl.UInt64: pl.Decimal(20, 0),
    pl.Int128: pl.Decimal(38, 0),
    pl.UInt128: pl.Decimal(38, 0),
    pl.Float16: pl.Float32(),
    pl.Time: pl.String(),
    pl.Duration: pl.Int64(),
    pl.Null: pl.String(),
}
_SCD2_TYPES: dict[str, pl.DataType] = {
    VALID_FROM: pl.Datetime("us", "UTC"),
    VALID_TO: pl.Datetime("us", "UTC"),
    IS_CURRENT: pl.Boolean(),
}


def load(
    request: LoadRequest, table_uri: str, storage_options: dict[str, str] | None = None
) -> dict[str, Any]:
    """Apply `request`'s batch to the Delta table at `table_uri` (created on the first load)."""
    with _delta_errors(table_uri):
        table = _open(table_uri, storage_options)
        if table is not None:
            entry = _find_commit(table, request.fingerprint, HISTORY_DEPTH)
            if entry is not None:
                return {**_replayed_result(table_uri, storage_options, entry), "replayed": True}
        return _Load(request, table_uri, storage_options, table).run()


def history(
    table_uri: str, storage_options: dict[str, str] | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The table's latest `limit` versions, newest first, with the merger's metadata."""
    with _delta_errors(table_uri):
        table = DeltaTable(table_uri, storage_options=storage_options)
        entries = sorted(table.history(limit=limit), key=lambda e: -int(e["version"]))
    versions = []
    for entry in entries:
        item: dict[str, Any] = {
            "version": int(entry["version"]),
            "timestamp": datetime.fromtimestamp(int(entry["timestamp"]) / 1000, UTC),
            "operation": entry.get("operation"),
            "run_id": entry.get(_RUN),
            "step_id": entry.get(_STEP),
            "fingerprint": entry.get(_FINGERPRINT),
        }
        if _RESULT in entry:
            stored = {**json.loads(entry[_RESULT]), "operation": entry.get("operation", "")}
            item.update(_counts(stored, entry.get("operationMetrics") or {}))
        versions.append(item)
    return versions


def read_version(
    table_uri: str, version: int, storage_options: dict[str, str] | None = None
) -> pl.LazyFrame:
    """The table's rows as `version` held them (time travel)."""
    try:
        # Opened eagerly: scan_delta alone would only fail once the frame is collected.
        table = DeltaTable(table_uri, version=version, storage_options=storage_options)
    except DeltaError as exc:
        raise AgentError(
            f"{table_uri} has no version {version}: {_first_line(exc)}", code="version_not_found"
        ) from exc
    return pl.scan_delta(table)


def maintain(
    table_uri: str,
    storage_options: dict[str, str] | None = None,
    *,
    optimize: bool = True,
    vacuum_retention_hours: int | None = 168,
) -> dict[str, Any]:
    """OPTIMIZE (compact small files) then VACUUM (delete files no kept version needs).

    `vacuum_retention_hours` None skips VACUUM. A retention shorter than the table's
    `delta.deletedFileRetentionDuration` is refused (`invalid_retention`), as Delta means it.
    """
    properties = CommitProperties(custom_metadata={"merger.operation": "maintain"})
    result: dict[str, Any] = {"optimize": None, "vacuum": None}
    with _delta_errors(table_uri):
        table = DeltaTable(table_uri, storage_options=storage_options)
        if optimize:
            metrics = table.optimize.compact(commit_properties=properties)
            result["optimize"] = {
                "files_added": metrics.get("numFilesAdded", 0),
                "files_removed": metrics.get("numFilesRemoved", 0),
                "metrics": metrics,
            }
        if vacuum_retention_hours is not None:
            try:
                deleted = table.vacuum(
                    retention_hours=vacuum_retention_hours,
                    dry_run=False,
                    enforce_retention_duration=True,
                    commit_properties=properties,
                )
            except DeltaError as exc:
                if "retention period" not in str(exc).lower():
                    raise
                raise AgentError(
                    f"vacuum of {table_uri}: {_first_line(exc)}", code="invalid_retention"
                ) from exc
            result["vacuum"] = {
                "retention_hours": vacuum_retention_hours,
                "files_deleted": len(deleted),
            }
        result["version"] = DeltaTable(table_uri, storage_options=storage_options).version()
    return result


def delta_compatible(batch: pl.LazyFrame, existing: dict[str, pl.DataType] | None) -> pl.LazyFrame:
    """`batch` with every column in a type Delta stores (see `_WIDER`).

    Categoricals and enums become strings, timestamps microseconds (UTC when zoned), unsigned
    integers the next signed type that holds them (UInt64 decimal(20,0)); an all-null
    (Null-typed) column takes the table's type for it, else string.
    """
    casts = []
    for column, dtype in batch.collect_schema().items():
        if isinstance(dtype, pl.Null):
            wanted = (existing or {}).get(column) or pl.String()
            casts.append(pl.col(column).cast(wanted))
            continue
        wanted = _storable(dtype)
        if wanted == dtype:
            continue
        if isinstance(dtype, pl.Time):
            # A cast to text drops the fraction of a second; the format keeps microseconds.
            casts.append(pl.col(column).dt.to_string("%H:%M:%S%.6f"))
        else:
            # Units first, so a Duration's integer is microseconds whatever its own unit.
            casts.append(pl.col(column).cast(_in_microseconds(dtype)).cast(wanted))
    return batch.with_columns(casts) if casts else batch


def _storable(dtype: pl.DataType) -> pl.DataType:
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", "UTC" if dtype.time_zone else None)
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_storable(_inner(dtype)))
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, _storable(_as_type(f.dtype))) for f in dtype.fields])
    return _WIDER.get(type(dtype), dtype)


def _in_microseconds(dtype: pl.DataType) -> pl.DataType:
    if isinstance(dtype, pl.Duration):
        return pl.Duration("us")
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", dtype.time_zone)
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_in_microseconds(_inner(dtype)))
    if isinstance(dtype, pl.Struct):
        fields = [pl.Field(f.name, _in_microseconds(_as_type(f.dtype))) for f in dtype.fields]
        return pl.Struct(fields)
    return dtype


def _inner(dtype: pl.List | pl.Array) -> pl.DataType:
    return _as_type(dtype.inner)


def _as_type(dtype: Any) -> pl.DataType:
    return dtype() if isinstance(dtype, type) else dtype


# --- the load ------------------------------------------------------------------------------


class _Load:
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
        self.schema = _polars_schema(table) if table is not None else None
        self.table_key = _recorded_key(table) if table is not None else []
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
        if is_scd2 != self.scd2:
            kind = "an scd2 table" if is_scd2 else "not an scd2 table"
            raise AgentError(
                f"{self.uri} is {kind}; it takes "
                + ("only merges with strategy scd2" if is_scd2 else "no scd2 merge"),
                code="strategy_mismatch",
            )
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
        metadata = {_FINGERPRINT: self.request.fingerprint, _RESULT: json.dumps(self.stored)}
        if self.request.run_id is not None:
            metadata[_RUN] = self.request.run_id
        if self.request.step_id is not None:
            metadata[_STEP] = self.request.step_id
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
        # mode "append" creates the table; "error" would fail a retry after a lost answer.
        write_deltalake(
            self.uri,
            _stream(batch, key),
            mode="append",
            storage_options=self.storage_options,
            commit_properties=self._properties(),
        )
        return self._committed(None, {})

    def _write(self, batch: pl.LazyFrame, mode: str) -> dict[str, Any]:
        assert self.table is not None and self.schema is not None
        empty = self._is_empty(batch)
        if empty and (mode == "append" or self.stored["basis"]["previous_rows"] == 0):
            return self._nothing(0)
        before, files = self.table.version(), _files(self.table)
        new = [c for c in batch.collect_schema().names() if c not in self.schema]
        write_deltalake(
            self.table,
            _stream(batch, []),
            mode="append" if mode == "append" else "overwrite",
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
            arrow = arrow.cast(_with_key_metadata(arrow.schema, key))
        return self.table.merge(
            arrow,
            " AND ".join(match),
            source_alias="s",
            target_alias="t",
            # Schema merge only when the table's schema changes: new columns or the key's
            # field metadata (delta-rs then commits the schema even if no row changes).
            merge_schema=bool(new) or record_key,
            commit_properties=self._properties(),
        )

    def _execute(self, merger: TableMerger) -> dict[str, Any]:
        assert self.table is not None
        before = self.table.version()
        files = _files(self.table)
        metrics = merger.execute()
        if self.table.version() == before:
            # delta-rs commits nothing when no row and no column changed.
            return self._result(before, "MERGE", metrics, self.table, 0)
        return self._committed(before, files)

    def _committed(self, before: int | None, files: dict[str, int]) -> dict[str, Any]:
        """The result of the commit this load just made (`before`: the version it read, and
        `files` that version's files)."""
        after = DeltaTable(self.uri, storage_options=self.storage_options)
        entry = _find_commit(after, self.request.fingerprint, 10)
        if entry is None:
            raise AgentError(
                f"the commit to {self.uri} is not in its history", code="busy", retryable=True
            )
        version = int(entry["version"])
        if before is not None and before != version - 1:
            # delta-rs rebased the commit over another writer's: diff the version below ours.
            files = _files_at(self.uri, self.storage_options, version - 1)
        added = sum(size for path, size in _files(after).items() if path not in files)
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
        return _assemble(stored, version, metrics, table, added_bytes)

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


# --- results ---------------------------------------------------------------------------------


def _counts(stored: dict[str, Any], metrics: dict[str, Any]) -> dict[str, int]:
    """inserted/updated/unchanged/deleted/written from what the commit stored and measured."""
    basis = stored.get("basis", {})
    operation = stored.get("operation", "")
    inserted = updated = unchanged = deleted = written = 0
    if operation == "WRITE":
        inserted = int(metrics.get("num_added_rows", 0))
        if stored["write_disposition"] == "replace":
            deleted = int(basis.get("previous_rows", 0))
        written = inserted + deleted
    elif stored["strategy"] == "scd2" and stored["write_disposition"] == "merge":
        new_versions = int(metrics.get("num_target_rows_inserted", 0))
        closed = int(metrics.get("num_target_rows_updated", 0))
        updated = int(basis.get("changed", 0))
        inserted = new_versions - updated
        deleted = closed - updated
        unchanged = int(basis.get("unchanged", 0))
        written = new_versions + closed
    elif stored["write_disposition"] == "merge":
        inserted = int(metrics.get("num_target_rows_inserted", 0))
        updated = int(metrics.get("num_target_rows_updated", 0))
        deleted = int(metrics.get("num_target_rows_deleted", 0))
        unchanged = int(basis.get("batch_rows", 0)) - inserted - updated
        written = inserted + updated + deleted
    return {
        "inserted": inserted,
        "updated": updated,
        "unchanged": unchanged,
        "deleted": deleted,
        "written": written,
    }


def _assemble(
    stored: dict[str, Any],
    version: int | None,
    metrics: dict[str, Any],
    table: DeltaTable | None,
    added_bytes: int | None,
) -> dict[str, Any]:
    schema = _polars_schema(table) if table is not None else {}
    known = {k: v for k, v in stored.items() if k not in ("basis", "operation")}
    return {
        **known,
        "version": version,
        "rows": table.count() if table is not None else 0,
        **_counts(stored, metrics),
        "bytes": added_bytes,
        # The whole table's data files (from the log, no data read): the dataset_bytes gauge.
        "size_bytes": sum(_files(table).values()) if table is not None else 0,
        "schema": schema_names(schema),
        "replayed": False,
    }


def _replayed_result(
    uri: str, storage_options: dict[str, str] | None, entry: dict[str, Any]
) -> dict[str, Any]:
    """The result of the load that made commit `entry`, rebuilt from that commit."""
    version = int(entry["version"])
    stored = {**json.loads(entry[_RESULT]), "operation": entry.get("operation", "")}
    at = DeltaTable(uri, version=version, storage_options=storage_options)
    try:
        before = _files_at(uri, storage_options, version - 1)
        added: int | None = sum(s for p, s in _files(at).items() if p not in before)
    except DeltaError:
        added = None  # the previous version's log is gone (log retention)
    return _assemble(stored, version, entry.get("operationMetrics") or {}, at, added)


# --- Delta helpers ---------------------------------------------------------------------------


def _open(uri: str, storage_options: dict[str, str] | None) -> DeltaTable | None:
    try:
        return DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return None


def _find_commit(table: DeltaTable, fingerprint: str, depth: int) -> dict[str, Any] | None:
    for entry in table.history(limit=depth):
        if entry.get(_FINGERPRINT) == fingerprint:
            return entry
    return None


def _polars_schema(table: DeltaTable) -> dict[str, pl.DataType]:
    empty = pa.schema(table.schema().to_arrow()).empty_table()
    return dict(pl.DataFrame(empty).schema)


def _recorded_key(table: DeltaTable) -> list[str]:
    positions = {
        field.name: int(field.metadata[KEY_METADATA])
        for field in table.schema().fields
        if KEY_METADATA in (field.metadata or {})
    }
    return sorted(positions, key=lambda name: positions[name])


def _with_key_metadata(schema: pa.Schema, key: list[str]) -> pa.Schema:
    fields = [
        field.with_metadata({KEY_METADATA: str(key.index(field.name))})
        if field.name in key
        else field
        for field in schema
    ]
    return pa.schema(fields)


def _files(table: DeltaTable) -> dict[str, int]:
    actions = pa.table(table.get_add_actions())
    return dict(
        zip(
            actions.column("path").to_pylist(),
            actions.column("size_bytes").to_pylist(),
            strict=True,
        )
    )


def _files_at(uri: str, storage_options: dict[str, str] | None, version: int) -> dict[str, int]:
    if version < 0:
        return {}
    return _files(DeltaTable(uri, version=version, storage_options=storage_options))


def _stream(batch: pl.LazyFrame, key: list[str]) -> pa.RecordBatchReader:
    """The batch as Arrow record batches, computed chunk by chunk (never all in memory)."""
    schema = pl.DataFrame(schema=batch.collect_schema()).to_arrow().schema
    if key:
        schema = _with_key_metadata(schema, key)

    def batches() -> Iterator[pa.RecordBatch]:
        for chunk in batch.collect_batches(chunk_size=_CHUNK_ROWS, engine="streaming"):
            for record_batch in chunk.to_arrow().to_batches():
                yield record_batch.cast(schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _q(column: str) -> str:
    # Unquoted names are lower-cased by delta-rs' SQL parser; backticks keep them as they are.
    return f"`{column}`"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextmanager
def _delta_errors(uri: str) -> Iterator[None]:
    """delta-rs' and polars' exceptions as the AgentErrors the engine understands."""
    try:
        yield
    except AgentError:
        raise
    except CommitFailedError as exc:
        # Writers are serialised by the action's lock, so this is another process's commit.
        raise AgentError(
            f"another writer committed to {uri} meanwhile; try again: {_first_line(exc)}",
            code="busy",
            retryable=True,
        ) from exc
    except (DeltaError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise AgentError(
            f"cannot load into {uri}: {_first_line(exc)}", code="merge_failed"
        ) from exc
    except OSError as exc:
        raise AgentError(
            f"cannot reach {uri}: {_first_line(exc)}", code="destination_error", retryable=True
        ) from exc
