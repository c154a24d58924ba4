"""A load's result, built from the commit that made it, and the merger's commit metadata.

Apart from the load because `history` and a replay read commits too: a fresh load and its
replay build their result here with the same code from the same commit (what it stored in
`RESULT`, its `operationMetrics`, its snapshot's data files).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from agents.base.tabular.schema import schema_names
from agents.data_merger.destinations.delta_types import polars_schema

# The commit metadata every commit of a load carries (`merger.result`: what it knew then).
FINGERPRINT, RUN, STEP, RESULT = (
    "merger.fingerprint",
    "merger.run_id",
    "merger.step_id",
    "merger.result",
)


def counts(stored: dict[str, Any], metrics: dict[str, Any]) -> dict[str, int]:
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


def assemble(
    stored: dict[str, Any],
    version: int | None,
    metrics: dict[str, Any],
    table: DeltaTable | None,
    added_bytes: int | None,
) -> dict[str, Any]:
    schema = polars_schema(table) if table is not None else {}
    known = {k: v for k, v in stored.items() if k not in ("basis", "operation")}
    return {
        **known,
        "version": version,
        "rows": table.count() if table is not None else 0,
        **counts(stored, metrics),
        "bytes": added_bytes,
        # The whole table's data files (from the log, no data read): the dataset_bytes gauge.
        "size_bytes": sum(data_files(table).values()) if table is not None else 0,
        "schema": schema_names(schema),
        "replayed": False,
    }


def replayed_result(
    uri: str, storage_options: dict[str, str] | None, entry: dict[str, Any]
) -> dict[str, Any]:
    """The result of the load that made commit `entry`, rebuilt from that commit."""
    version = int(entry["version"])
    stored = {**json.loads(entry[RESULT]), "operation": entry.get("operation", "")}
    at = DeltaTable(uri, version=version, storage_options=storage_options)
    try:
        before = data_files_at(uri, storage_options, version - 1)
        added: int | None = sum(s for p, s in data_files(at).items() if p not in before)
    except DeltaError:
        added = None  # the previous version's log is gone (log retention)
    return assemble(stored, version, entry.get("operationMetrics") or {}, at, added)


def find_commit(table: DeltaTable, fingerprint: str, depth: int) -> dict[str, Any] | None:
    for entry in table.history(limit=depth):
        if entry.get(FINGERPRINT) == fingerprint:
            return entry
    return None


def data_files(table: DeltaTable) -> dict[str, int]:
    actions = pa.table(table.get_add_actions())
    return dict(
        zip(
            actions.column("path").to_pylist(),
            actions.column("size_bytes").to_pylist(),
            strict=True,
        )
    )


def data_files_at(uri: str, storage_options: dict[str, str] | None, version: int) -> dict[str, int]:
    if version < 0:
        return {}
    return data_files(DeltaTable(uri, version=version, storage_options=storage_options))
