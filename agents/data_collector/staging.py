"""Writing collected data into the step's run dir under DATA_ROOT, with manifests.

All functions block (file IO, encoding); callers run them in `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from agents.base.storage import DataRoot

_CHUNK = 1 << 20


def reset_dir(root: DataRoot, path: str) -> None:
    """Empty the run dir: a retry replaces its own earlier, possibly partial, output."""
    if root.fs.exists(path):
        root.fs.rm(path, recursive=True)
    root.fs.makedirs(path, exist_ok=True)


def _write(root: DataRoot, dest: str, data: bytes) -> dict[str, Any]:
    root.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
    with root.fs.open(dest, "wb") as handle:
        handle.write(data)
    return {"uri": root.uri(dest), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def copy_into(
    src_fs: AbstractFileSystem, src_path: str, root: DataRoot, dest: str
) -> dict[str, Any]:
    """Stream one file into the run dir, hashing on the way: `{uri, bytes, sha256}`."""
    root.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with src_fs.open(src_path, "rb") as src, root.fs.open(dest, "wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    return {"uri": root.uri(dest), "bytes": size, "sha256": digest.hexdigest()}


def write_ndjson(root: DataRoot, dest: str, records: list[Any]) -> dict[str, Any]:
    """One JSON record per line: `{uri, bytes, sha256, rows, format}`."""
    data = "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
    ).encode()
    return {**_write(root, dest, data), "rows": len(records), "format": "ndjson"}


def write_parquet(root: DataRoot, dest: str, table: pa.Table) -> dict[str, Any]:
    """A Parquet file: `{uri, bytes, sha256, rows, schema, format}`."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    manifest = _write(root, dest, buffer.getvalue())
    schema = {f.name: str(f.type) for f in table.schema}
    return {**manifest, "rows": table.num_rows, "schema": schema, "format": "parquet"}


def records_to_parquet(root: DataRoot, dest: str, records: list[Any]) -> dict[str, Any]:
    """API records as Parquet (nested objects become structs)."""
    rows = [r if isinstance(r, dict) else {"value": r} for r in records]
    return write_parquet(root, dest, pa.Table.from_pylist(rows))
