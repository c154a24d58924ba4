"""Unnesting nested records into a parent table and child tables, dlt-style (vectorised).

The rule (convert's `nested: "unnest"`), applied to a staged Parquet file whose objects are
structs and whose arrays are lists:
- an object's fields become columns of the table holding it, named `<field>__<key>` (nested
  objects flatten on: `a__b__c`); a null object gives nulls in all its columns;
- an array becomes a child table `<path>`, `<field>` under the root, `<parent>__<field>` below
  it (so the merger's dataset is `<dataset>__<path>`): one row per element, its fields as
  columns when the elements are objects, else one column `value`. Each child row carries
  `_parent_id` (the `_row_id` of the row holding the array), `_position` (the element's index
  in it, from 0), `_root_id` (the `_row_id` of the root row it descends from) and a `_row_id`
  of its own, md5(`<_parent_id>_<path>_<_position>`). An empty or null array gives no child rows;
- every root row gets `_row_id`: md5 of the JSON of its `primary_key` values when a key is
  given (stable across runs: the merger replaces a merged record's children by it), else md5 of
  the JSON of the whole row and its position in the file (deterministic, but two files holding
  the same row at the same position give it the same id);
- `max_nesting` bounds the depth: each object or array counts one level from the root record
  (a top-level field's object or array is level 1). One deeper than `max_nesting` is kept as its
  JSON text, so `max_nesting: 0` keeps every nested field as JSON text in the root table.
Lists are split with `list_flatten` / `list_value_length` over whole record batches and the
ids are computed by DuckDB over the same Arrow data: no Python loop runs per row.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agents.base.actions import AgentError

SEPARATOR = "__"
ROW_ID, PARENT_ID, POSITION, ROOT_ID = "_row_id", "_parent_id", "_position", "_root_id"
VALUE = "value"
LINK_COLUMNS = (ROW_ID, PARENT_ID, POSITION, ROOT_ID)
# Parquet key-value metadata of a root file: how its ids were made and where its children are.
METADATA_KEY = b"ingest.unnest"
_BATCH_ROWS = 65_536


@dataclass
class Unnested:
    """The files one unnest wrote: the root's and each child table's, by path."""

    root: str
    children: dict[str, str] = field(default_factory=dict)  # path -> local file
    row_id: str = "content"  # "primary_key" or "content"
    primary_key: list[str] = field(default_factory=list)


def _is_list(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    )


def _is_nested(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_struct(dtype) or pa.types.is_map(dtype) or _is_list(dtype))


def _query(con: duckdb.DuckDBPyConnection, sql: str, data: pa.Table) -> pa.Array:
    con.register("batch", data)
    try:
        result = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("batch")
    return result.column(0).combine_chunks() if result.num_rows else pa.array([], pa.string())


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _entry(name: str) -> str:
    """`'name': "name"`, one entry of a DuckDB struct literal of the column."""
    literal = name.replace("'", "''")
    return f"'{literal}': {_quoted(name)}"


class _Splitter:
    """Splits record batches into tables by path; one per convert call."""

    def __init__(self, max_nesting: int, primary_key: list[str]) -> None:
        self.max_nesting = max_nesting
        self.primary_key = primary_key
        self.con = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})

    def close(self) -> None:
        self.con.close()

    def json_text(self, values: pa.Array) -> pa.Array:
        return _query(self.con, "SELECT to_json(v)::VARCHAR FROM batch", pa.table({"v": values}))

    def root_ids(self, batch: pa.Table, offset: int) -> pa.Array:
        if self.primary_key:
            key = ", ".join(_entry(k) for k in self.primary_key)
            return _query(self.con, f"SELECT md5(to_json({{{key}}})) FROM batch", batch)
        if batch.num_columns == 0:
            positions = pa.table({"p": pa.array(np.arange(offset, offset + batch.num_rows))})
            return _query(self.con, "SELECT md5('#' || p::VARCHAR) FROM batch", positions)
        row = ", ".join(_entry(c) for c in batch.column_names)
        numbered = batch.append_column(
            "__position", pa.array(np.arange(offset, offset + batch.num_rows), pa.int64())
        )
        return _query(
            self.con,
            f"SELECT md5(to_json({{{row}}}) || '#' || __position::VARCHAR) FROM batch",
            numbered,
        )

    def child_ids(self, path: str, parents: pa.Array, positions: pa.Array) -> pa.Array:
        frame = pa.table({"p": parents, "t": pa.repeat(path, len(parents)), "i": positions})
        return _query(self.con, "SELECT md5(p || '_' || t || '_' || i::VARCHAR) FROM batch", frame)

    def split(self, batch: pa.Table, offset: int) -> dict[str, pa.Table]:
        """The tables of one record batch: "" for the root, else the child's path."""
        taken = [c for c in LINK_COLUMNS if c in batch.column_names]
        if taken:
            raise AgentError(
                f"the records already have {', '.join(taken)}, which unnesting adds",
                code="invalid_input",
            )
        ids = self.root_ids(batch, offset)
        columns = [(name, batch.column(name).combine_chunks()) for name in batch.column_names]
        out: dict[str, pa.Table] = {}
        self._table(columns, 0, "", {ROW_ID: ids}, ids, ids, out)
        return out

    def _table(
        self,
        columns: list[tuple[str, pa.Array]],
        level: int,
        path: str,
        links: dict[str, pa.Array],
        row_ids: pa.Array,
        root_ids: pa.Array,
        out: dict[str, pa.Table],
    ) -> None:
        """Write the table at `path` (its columns hold values of level `level` + 1)."""
        flat: dict[str, pa.Array] = {}
        lists: list[tuple[str, pa.Array, int]] = []

        def place(name: str, values: pa.Array, depth: int) -> None:
            dtype = values.type
            if _is_nested(dtype) and depth > self.max_nesting:
                values = self.json_text(values)
            elif pa.types.is_struct(dtype):
                for child_field, child in zip(dtype, values.flatten(), strict=True):
                    place(f"{name}{SEPARATOR}{child_field.name}", child, depth + 1)
                return
            elif _is_list(dtype):
                lists.append((name, values, depth))
                return
            elif pa.types.is_map(dtype):
                values = self.json_text(values)
            if name in flat or name in LINK_COLUMNS:
                raise AgentError(
                    f"unnesting gives two columns named {name!r} in table {path or 'root'!r}",
                    code="invalid_input",
                )
            flat[name] = values

        for name, values in columns:
            place(name, values, level + 1)
        flat.update(links)
        out[path] = pa.table(flat)
        for name, values, depth in lists:
            self._child(
                f"{path}{SEPARATOR}{name}" if path else name, values, depth, row_ids, root_ids, out
            )

    def _child(
        self,
        path: str,
        lists: pa.Array,
        depth: int,
        parent_ids: pa.Array,
        root_ids: pa.Array,
        out: dict[str, pa.Table],
    ) -> None:
        lengths = pc.coalesce(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
        lengths = lengths.astype(np.int64)
        parent_index = pa.array(np.repeat(np.arange(len(lists), dtype=np.int64), lengths))
        starts = np.cumsum(lengths) - lengths
        positions = pa.array(
            np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
        )
        values = pc.list_flatten(lists)
        parents = pc.take(parent_ids, parent_index)
        roots = pc.take(root_ids, parent_index)
        ids = self.child_ids(path, parents, positions)
        if pa.types.is_struct(values.type) and depth <= self.max_nesting:
            columns = list(zip([f.name for f in values.type], values.flatten(), strict=True))
        else:
            columns = [(VALUE, values)]
        links = {ROW_ID: ids, PARENT_ID: parents, POSITION: positions, ROOT_ID: roots}
        # The elements' fields hold values one level below the array (an element's object is
        # the child row itself, not a level of its own).
        self._table(columns, depth, path, links, ids, roots, out)


def _compression(codec: str) -> str:
    return "none" if codec == "uncompressed" else codec


def unnest_file(
    source: str,
    workdir: str,
    stem: str,
    *,
    max_nesting: int,
    primary_key: list[str],
    compression: str,
) -> Unnested:
    """Split the Parquet file `source` into a root file and one file per child table.

    Files are `<stem>.parquet` and `<stem>__<path>.parquet` in `workdir`; the root file's
    metadata (`METADATA_KEY`) names each child's file (a sibling) and how `_row_id` was made.
    """
    parquet = pq.ParquetFile(source)
    missing = [k for k in primary_key if k not in parquet.schema_arrow.names]
    if missing:
        raise AgentError(
            f"primary_key names {', '.join(missing)}, which the records do not have",
            code="missing_column",
        )
    nested_key = [k for k in primary_key if _is_nested(parquet.schema_arrow.field(k).type)]
    if nested_key:
        raise AgentError(
            f"primary_key column {', '.join(nested_key)} is an object or array",
            code="invalid_input",
        )
    result = Unnested(
        root=os.path.join(workdir, f"{stem}.parquet"),
        row_id="primary_key" if primary_key else "content",
        primary_key=list(primary_key),
    )
    writers: dict[str, pq.ParquetWriter] = {}
    splitter = _Splitter(max_nesting, list(primary_key))
    offset = 0
    try:
        batches = parquet.iter_batches(batch_size=_BATCH_ROWS)
        first = True
        for batch in _with_one(batches, parquet.schema_arrow):
            tables = splitter.split(pa.Table.from_batches([batch]), offset)
            offset += batch.num_rows
            if first:
                first = False
                for path in tables:
                    if path:
                        result.children[path] = os.path.join(
                            workdir, f"{stem}{SEPARATOR}{path}.parquet"
                        )
                writers = _open_writers(tables, result, compression)
            for path, table in tables.items():
                writer = writers[path]
                writer.write_table(table.cast(writer.schema))
    finally:
        splitter.close()
        for writer in writers.values():
            writer.close()
    return result


def _with_one(batches: Any, schema: pa.Schema) -> Any:
    """The batches, or one empty batch of `schema` when there are none (empty tables too)."""
    empty = True
    for batch in batches:
        empty = False
        yield batch
    if empty:
        yield pa.RecordBatch.from_pylist([], schema=schema)


def _open_writers(
    tables: dict[str, pa.Table], result: Unnested, compression: str
) -> dict[str, pq.ParquetWriter]:
    metadata = {
        "row_id": result.row_id,
        "primary_key": result.primary_key,
        "children": {p: os.path.basename(f) for p, f in result.children.items()},
    }
    writers = {}
    for path, table in tables.items():
        schema = _plain(table.schema)
        if not path:
            schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata).encode()})
        location = result.children[path] if path else result.root
        writers[path] = pq.ParquetWriter(location, schema, compression=_compression(compression))
    return writers


def _plain(schema: pa.Schema) -> pa.Schema:
    """`schema` with null-typed columns (all values null in the first batch) as text."""
    return pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema])


def unnest_metadata(schema: pa.Schema) -> dict[str, Any] | None:
    """What a root file's metadata says of its unnesting, or None for a file not unnested."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else None
