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

This module holds the entry points; the load itself is `delta_load.Load`, the type conversions
and the key's field metadata are in `delta_types`, and a result's assembly from its commit
(fresh or replayed) is in `delta_results`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from agents.base.actions import AgentError
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.delta_load import Load
from agents.data_merger.destinations.delta_results import (
    FINGERPRINT,
    RESULT,
    RUN,
    STEP,
    counts,
    find_commit,
    replayed_result,
)

# How many of the latest commits a load searches for its fingerprint.
HISTORY_DEPTH = 1000


def load(
    request: LoadRequest, table_uri: str, storage_options: dict[str, str] | None = None
) -> dict[str, Any]:
    """Apply `request`'s batch to the Delta table at `table_uri` (created on the first load)."""
    with _delta_errors(table_uri):
        table = _open(table_uri, storage_options)
        if table is not None:
            entry = find_commit(table, request.fingerprint, HISTORY_DEPTH)
            if entry is not None:
                return {**replayed_result(table_uri, storage_options, entry), "replayed": True}
        return Load(request, table_uri, storage_options, table).run()


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
            "run_id": entry.get(RUN),
            "step_id": entry.get(STEP),
            "fingerprint": entry.get(FINGERPRINT),
        }
        if RESULT in entry:
            stored = {**json.loads(entry[RESULT]), "operation": entry.get("operation", "")}
            item.update(counts(stored, entry.get("operationMetrics") or {}))
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


def _open(uri: str, storage_options: dict[str, str] | None) -> DeltaTable | None:
    try:
        return DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return None


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
