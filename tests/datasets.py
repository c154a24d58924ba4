"""Reading what a merge step loaded, whatever its destination format."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable


def merged_table(merged: dict[str, Any]) -> pa.Table:
    """The rows of the dataset a merge result names, at the version it made."""
    if merged["target"] == "delta":
        return DeltaTable(merged["uri"], version=merged["version"]).to_pyarrow_table()
    return pa.concat_tables([pq.read_table(f["uri"]) for f in merged["files"]])


def merged_rows(merged: dict[str, Any]) -> list[dict[str, Any]]:
    """`merged_table` as a list of dicts."""
    rows: list[dict[str, Any]] = merged_table(merged).to_pylist()
    return rows


def merged_files(merged: dict[str, Any]) -> list[str]:
    """The data files of the version a merge result names."""
    if merged["target"] == "delta":
        return list(DeltaTable(merged["uri"], version=merged["version"]).file_uris())
    return [f["uri"] for f in merged["files"]]
