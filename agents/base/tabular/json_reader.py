"""JSON arrays and NDJSON, through DuckDB's streaming JSON reader, staged as Parquet.

JSON has numbers, strings, booleans, objects and arrays; the rule for what each becomes:
- objects become structs and arrays lists, at any depth (the merger writes them as nested
  Parquet or PostgreSQL `jsonb`; convert's `nested: unnest` then splits them into columns and
  child tables, agents.base.tabular.unnest);
- a field the reader cannot give one type is kept as JSON text, at the depth where that
  happens: an object with no keys in any record (`{}`), a field whose records disagree on the
  kind (a number in one, a string or object in another), an array of mixed kinds, and a field
  that is null in every record. The text is the value's JSON (`1`, `"x"`, `{"a":1}`), so
  `1` and `"1"` stay apart;
- integers beyond int64 become decimal(38,0) rather than floating point.
DuckDB's map inference is off: an object stays a struct with its keys as fields.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import duckdb
import polars as pl

from agents.base.actions import AgentError
from agents.base.tabular.text import invalid_utf8

_CONFIG = {"memory_limit": "512MB", "threads": 2, "preserve_insertion_order": True}
_WIDE_INTEGERS = ("HUGEINT", "UHUGEINT")


def _writable(dtype: Any) -> Any:
    """`dtype` with JSON (and NULL) leaves as VARCHAR and wide integers as DECIMAL(38,0)."""
    name = str(dtype)
    if name in ("JSON", '"NULL"', "NULL"):
        return duckdb.sqltype("VARCHAR")
    if name in _WIDE_INTEGERS:
        return duckdb.sqltype("DECIMAL(38,0)")
    if dtype.id == "struct":
        return duckdb.struct_type({field: _writable(child) for field, child in dtype.children})
    if dtype.id == "list":
        return duckdb.list_type(_writable(dtype.children[0][1]))
    if dtype.id == "map":
        return duckdb.map_type(_writable(dtype.children[0][1]), _writable(dtype.children[1][1]))
    return dtype


def _stage(
    con: duckdb.DuckDBPyConnection,
    path: str,
    layout: Literal["auto", "newline_delimited"],
    sample: int,
    out: str,
) -> None:
    relation = con.read_json(path, format=layout, map_inference_threshold=-1, sample_size=sample)
    columns = [
        duckdb.ColumnExpression(column).cast(_writable(dtype)).alias(column)
        for column, dtype in zip(relation.columns, relation.types, strict=True)
    ]
    relation.select(*columns).write_parquet(out)


def read_json(path: str, fmt: str, workdir: str, stem: str, name: str) -> pl.LazyFrame:
    """A lazy frame over the JSON array (`fmt` "json") or NDJSON file at UTF-8 `path`."""
    staged = os.path.join(workdir, f"{stem}-json.parquet")
    layout: Literal["auto", "newline_delimited"] = (
        "newline_delimited" if fmt == "ndjson" else "auto"
    )
    with duckdb.connect(config=_CONFIG) as con:  # type: ignore[arg-type]
        try:
            _stage(con, path, layout, 20_480, staged)
        except duckdb.Error:
            # A type seen only past the sampled records: infer from every record instead.
            try:
                _stage(con, path, layout, -1, staged)
            except duckdb.Error as exc:
                if "UTF-8" in str(exc) and (bad := invalid_utf8(path, name)):
                    raise bad from exc
                message = str(exc).replace(path, name).strip().splitlines()[0]
                message = message.removeprefix("Invalid Input Error: ")
                raise AgentError(
                    f"cannot read {name!r} as {fmt.upper()}: {message}", code="parse_error"
                ) from exc
    return pl.scan_parquet(staged)
