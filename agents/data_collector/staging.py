"""Writing collected data into the step's run dir under DATA_ROOT, with manifests.

All functions block (file IO, encoding); callers run them in `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from agents.base.actions import AgentError
from agents.base.context import ActionContext
from agents.base.storage import DataRoot

_CHUNK = 1 << 20


def collect_dir(root: DataRoot, ctx: ActionContext) -> str:
    """The folder of one collect's staged files, its own for each child of a map_over.

    The children of a fanned-out step (sql_database: one per table) share the run and step
    ids; only their idempotency keys differ (they carry the map index), so without a folder of
    their own each child's reset would wipe the files another had staged. A retry has the same
    key: it still replaces its own earlier output, and nobody else's."""
    out = root.run_dir(ctx.run_id, ctx.step_id)
    if ctx.idempotency_key is None:
        return out
    return posixpath.join(out, hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:16])


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


def encode_ndjson(records: list[Any], *, stdlib: bool = False) -> bytes:
    """Records as NDJSON, one per line, in one orjson call per record.

    `stdlib`: records the stdlib decoded (payloads.decode_json), which may hold what orjson
    would not write as it was read (NaN becomes null, integers beyond 64 bits are refused).
    """
    if not stdlib:
        try:
            return b"".join([orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records])
        except orjson.JSONEncodeError:
            pass  # a value orjson cannot write as read: the stdlib below writes it
    return b"".join([_stdlib_line(r) for r in records])


def _stdlib_line(record: Any) -> bytes:
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (a valid JSON escape, never UTF-8): written as the escape it came as.
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def write_parts(root: DataRoot, dest: str, parts: Iterable[bytes]) -> dict[str, Any]:
    """Concatenate `parts` into one file, hashing on the way: `{uri, bytes, sha256}`."""
    root.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with root.fs.open(dest, "wb") as handle:
        for part in parts:
            digest.update(part)
            handle.write(part)
            size += len(part)
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
    """API records as Parquet (nested objects become structs; a scalar record is `value`).

    pyarrow.lib.ArrowInvalid (or ArrowTypeError) when a field's values have no common type.
    """
    rows = [r if isinstance(r, dict) else {"value": r} for r in records]
    columns = dict.fromkeys(k for r in rows for k in r)
    # Table.from_pylist takes its columns from the first record alone: name every field.
    return write_parquet(
        root, dest, pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in columns})
    )


@dataclass
class PageBatch:
    """Consecutive REST pages' records, staged as one file once the batch is large enough.

    An NDJSON batch holds each page's records already encoded, and writes them in one pass; a
    Parquet batch holds the records and builds one table when written. `add` and `write` block
    (encoding, file IO): call them in a thread for a large page.
    """

    output_format: str
    max_records: int
    max_bytes: int = 64 << 20
    first_page: int = 0
    last_page: int = 0
    rows: int = 0
    size: int = 0
    parts: list[bytes] = field(default_factory=list)
    pages: list[tuple[int, list[Any]]] = field(default_factory=list)

    def add(self, page: int, records: list[Any], *, stdlib: bool, raw_bytes: int) -> None:
        """Page `page`'s records (`stdlib`: decoded by the stdlib; `raw_bytes`: the page's size)."""
        if not self.rows:
            self.first_page = page
        self.last_page = page
        self.rows += len(records)
        if self.output_format == "ndjson":
            part = encode_ndjson(records, stdlib=stdlib)
            self.parts.append(part)
            self.size += len(part)
        else:
            self.pages.append((page, records))
            self.size += raw_bytes

    @property
    def full(self) -> bool:
        """Whether to write the batch now rather than add the next page to it."""
        return self.rows >= self.max_records or self.size >= self.max_bytes

    def write(self, root: DataRoot, out: str) -> list[dict[str, Any]]:
        """The batch as one file in `out`, named after its first page: the manifests.

        A Parquet batch whose pages disagree on a field's type is written one file per page,
        as each page's own table; a page that disagrees with itself is an AgentError.
        """
        if self.output_format == "ndjson":
            dest = posixpath.join(out, f"page-{self.first_page:05d}.ndjson")
            written = write_parts(root, dest, self.parts)
            manifest = {**written, "rows": self.rows, "format": "ndjson"}
            return [{**manifest, "page": self.first_page, "last_page": self.last_page}]
        dest = posixpath.join(out, f"page-{self.first_page:05d}.parquet")
        try:
            manifest = records_to_parquet(root, dest, [r for _, page in self.pages for r in page])
            return [{**manifest, "page": self.first_page, "last_page": self.last_page}]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if len(self.pages) == 1:
                raise _no_schema(self.first_page, exc) from exc
        manifests = []
        for number, records in self.pages:
            dest = posixpath.join(out, f"page-{number:05d}.parquet")
            try:
                manifest = records_to_parquet(root, dest, records)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise _no_schema(number, exc) from exc
            manifests.append({**manifest, "page": number, "last_page": number})
        return manifests


def _no_schema(page: int, exc: Exception) -> AgentError:
    return AgentError(
        f"page {page}: the records do not fit one Parquet schema ({exc}); collect as ndjson",
        code="unexpected_payload",
    )
