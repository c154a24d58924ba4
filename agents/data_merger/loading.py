"""Reading batches and committing a merge into a Parquet dataset (blocking; run in a thread)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import asdict
from typing import Any

import polars as pl
from deltalake import DeltaTable

from agents.base.actions import AgentError
from agents.base.frames import open_files
from agents.base.storage import DataRoot, sha256_of
from agents.base.tabular.inputs import publish, scratch_dir
from agents.base.tabular.schema import schema_names
from agents.data_merger import dataset
from agents.data_merger.merging import (
    MergeSpec,
    Outcome,
    canonical_checksum,
    combine,
    concat_batches,
    deduplicate,
)


def fingerprint(locations: list[str], spec: MergeSpec) -> str:
    """Identifies a batch: the content of its files, in order, and how it is merged."""
    digests = [sha256_of(location)[0] for location in locations]
    how = asdict(spec)
    if spec.strategy == "upsert":
        # Fields added with scd2: an upsert's fingerprint stays what earlier versions stored.
        del how["strategy"], how["retire_absent"]
    canonical = json.dumps({"files": digests, "spec": how}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _batch(locations: list[str], spec: MergeSpec, workdir: str) -> pl.LazyFrame:
    frames = [open_files([location], workdir) for location in locations]
    try:
        return deduplicate(concat_batches(frames), spec)
    except pl.exceptions.PolarsError as exc:
        raise AgentError(f"cannot combine the batches: {exc}", code="parse_error") from exc


def prepare(
    locations: list[str], spec: MergeSpec, workdir: str
) -> tuple[pl.LazyFrame, pl.LazyFrame | None]:
    """The deduplicated batch rows, and the keys its hard_delete rows delete, lazily."""
    batch = _batch(locations, spec, workdir)
    if not (spec.hard_delete and spec.hard_delete in batch.collect_schema().names()):
        return batch, None
    dtype = batch.collect_schema()[spec.hard_delete]
    flag = (
        pl.col(spec.hard_delete).fill_null(False)
        if dtype == pl.Boolean
        else pl.col(spec.hard_delete).is_not_null()
    )
    deletes = batch.filter(flag).select(spec.primary_key)
    return batch.filter(~flag).drop(spec.hard_delete), deletes


def _file_entry(root: DataRoot, base: str, path: str, rows: int) -> dict[str, Any]:
    digest, size = sha256_of(root.uri(path))
    return {"path": posixpath.relpath(path, base), "rows": rows, "bytes": size, "sha256": digest}


def merge_parquet_dataset(
    root: DataRoot, name: str, locations: list[str], spec: MergeSpec, batch_id: str
) -> dict[str, Any]:
    """Merge the batch into dataset `name` and commit a new version; the merge result.

    The caller holds the dataset's lock. A batch already committed (same fingerprint) is not
    merged again: its stored result comes back with `replayed: true`.
    """
    state = dataset.load_state(root, name)
    if (previous := dataset.find_commit(state, batch_id)) is not None:
        return {**previous, "replayed": True}
    known_key = (state or {}).get("primary_key") or []
    if spec.disposition == "merge" and known_key and known_key != spec.primary_key:
        raise AgentError(
            f"dataset {name!r} is keyed by {known_key}; merging by {spec.primary_key} is refused",
            code="primary_key_mismatch",
        )
    key = spec.primary_key or (known_key if spec.disposition == "append" else [])
    base = dataset.dataset_dir(root, name)
    version = (state or {}).get("version", 0) + 1
    target = dataset.data_file_path(root, name, version, batch_id[:12])
    with scratch_dir(root) as work:
        batch = _batch(locations, spec, work)
        if state and _nothing_to_write(batch, spec, state):
            return _unchanged_parquet(root, name, spec, state)
        existing = dataset.scan(root, name, state) if state else None
        try:
            outcome = combine(existing, batch, spec)
            if state and _merged_nothing(outcome, batch, spec, state):
                # Every row is already there as it is: the current version stays current.
                return _unchanged_parquet(
                    root, name, spec, state, unchanged=outcome.unchanged, empty=False
                )
            full = outcome.rows.collect(engine="streaming")
            if key:
                full = full.sort(key, nulls_last=True, maintain_order=True)
            checksum = canonical_checksum(full, key)
            out = os.path.join(work, "data.parquet")
            if spec.disposition == "append" and state:
                written = outcome.rows.collect_schema()  # appended files keep their own layout
                new_rows = batch.collect(engine="streaming")
                if spec.hard_delete and spec.hard_delete in new_rows.columns:
                    new_rows = new_rows.drop(spec.hard_delete)
                new_rows.write_parquet(out)
                files = [*state["files"]]
                rows_written = new_rows.height
            else:
                written = full.schema
                full.write_parquet(out)
                files = []
                rows_written = full.height
        except pl.exceptions.PolarsError as exc:
            raise AgentError(f"cannot merge into {name!r}: {exc}", code="merge_failed") from exc
        publish(root, out, target)
    files.append(_file_entry(root, base, target, rows_written))
    result: dict[str, Any] = {
        "dataset": name,
        "target": "parquet",
        "uri": root.uri(base),
        "version": version,
        "files": [
            {
                "uri": root.uri(posixpath.join(base, f["path"])),
                "rows": f["rows"],
                "bytes": f["bytes"],
                "sha256": f["sha256"],
            }
            for f in files
        ],
        "rows": full.height,
        "inserted": outcome.inserted,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "deleted": outcome.deleted,
        "checksum": checksum,
        "schema": schema_names(written),
        "primary_key": key,
        "write_disposition": spec.disposition,
        "replayed": False,
        "written": rows_written,
    }
    commits = [*(state or {}).get("commits", []), {"fingerprint": batch_id, "result": result}]
    new_state = {
        "dataset": name,
        "version": version,
        "files": files,
        "rows": full.height,
        "schema": result["schema"],
        "checksum": checksum,
        "primary_key": key,
        "commits": commits,
    }
    dataset.commit(root, name, new_state)
    dataset.prune(root, name, new_state)
    return result


def _new_columns(batch: pl.LazyFrame, spec: MergeSpec, state: dict[str, Any]) -> bool:
    # A column the dataset lacks is a change of schema, worth a version even without rows.
    columns = set(batch.collect_schema().names()) - {spec.hard_delete}
    return bool(columns - set(state.get("schema", {})))


def _nothing_to_write(batch: pl.LazyFrame, spec: MergeSpec, state: dict[str, Any]) -> bool:
    """Whether appending or upserting `batch` leaves the dataset as it is: no rows, no new
    column (replacing with no rows empties the dataset, a change)."""
    if spec.disposition == "replace" or _new_columns(batch, spec, state):
        return False
    return batch.head(1).collect().height == 0


def _merged_nothing(
    outcome: Outcome, batch: pl.LazyFrame, spec: MergeSpec, state: dict[str, Any]
) -> bool:
    """Whether an upsert inserted, updated and deleted nothing and added no column."""
    changed = outcome.inserted or outcome.updated or outcome.deleted
    return spec.disposition == "merge" and not changed and not _new_columns(batch, spec, state)


_NO_CHANGE = {"inserted": 0, "updated": 0, "unchanged": 0, "deleted": 0, "written": 0}


def nothing_loaded(
    root: DataRoot, body: Any, kind: str, storage_options: dict[str, str] | None
) -> dict[str, Any]:
    """The result of merging no batch files: the destination as it already is."""
    spec = body.spec()
    if kind == "parquet":
        return _unchanged_parquet(
            root, body.dataset, spec, dataset.load_state(root, body.dataset) or {}
        )
    result: dict[str, Any] = {
        "dataset": body.dataset,
        "target": kind,
        **_NO_CHANGE,
        "write_disposition": spec.disposition,
        "strategy": spec.strategy,
        "replayed": False,
        "empty_batch": True,
    }
    if kind == "delta":
        uri = root.uri(dataset.dataset_dir(root, body.dataset))
        result["uri"] = uri
        if DeltaTable.is_deltatable(uri, storage_options=storage_options):
            table = DeltaTable(uri, storage_options=storage_options)
            result.update(version=table.version(), rows=table.count())
    else:
        result["table"] = body.destination.table or body.dataset
    return result


def _unchanged_parquet(
    root: DataRoot,
    name: str,
    spec: MergeSpec,
    state: dict[str, Any],
    *,
    unchanged: int = 0,
    empty: bool = True,
) -> dict[str, Any]:
    """The current version as a merge result that wrote nothing (`written: 0`)."""
    base = dataset.dataset_dir(root, name)
    return {
        "dataset": name,
        "target": "parquet",
        "uri": root.uri(base),
        "version": state.get("version", 0),
        "files": [
            {
                "uri": root.uri(posixpath.join(base, f["path"])),
                "rows": f["rows"],
                "bytes": f["bytes"],
                "sha256": f["sha256"],
            }
            for f in state.get("files", [])
        ],
        "rows": state.get("rows", 0),
        **_NO_CHANGE,
        "unchanged": unchanged,
        "checksum": state.get("checksum"),
        "schema": state.get("schema", {}),
        "primary_key": state.get("primary_key") or spec.primary_key or [],
        "write_disposition": spec.disposition,
        "replayed": False,
        "empty_batch": empty,
    }
