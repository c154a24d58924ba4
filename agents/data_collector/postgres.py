"""Collecting from PostgreSQL: a server-side cursor streamed in chunks, written as Parquet.

The table never sits in memory whole: rows arrive `chunk_size` at a time from a server-side
cursor (SQLAlchemy `stream()` over asyncpg) and each chunk becomes one Parquet file.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import text

from agents.base.actions import AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.security import scrub
from agents.base.storage import DataRoot
from agents.data_collector import staging
from agents.data_collector.cursor import CursorState, IncrementalWindow, record_key
from agents.data_collector.rest import Incremental
from agents.data_connector.postgres import (
    CONNECT_ERRORS,
    Column,
    primary_keys,
    table_columns,
)
from agents.data_connector.sources import PostgresSource, postgres_engine

_INTS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
_SIMPLE = {
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "time without time zone": pa.time64("us"),
    "bytea": pa.binary(),
    "interval": pa.duration("us"),
}


def arrow_type(column: Column) -> pa.DataType:
    """The Parquet type of a column (unconstrained numeric becomes float64, unknowns text)."""
    if column.data_type in _INTS:
        return _INTS[column.data_type]
    if column.data_type in _SIMPLE:
        return _SIMPLE[column.data_type]
    if column.data_type == "numeric":
        if column.precision is None:
            return pa.float64()
        factory = pa.decimal128 if column.precision <= 38 else pa.decimal256
        return factory(column.precision, column.scale or 0)
    return pa.string()


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _to_table(rows: list[Any], names: list[str], schema: pa.Schema) -> pa.Table:
    arrays = []
    for index, field in enumerate(schema):
        values = [row[index] for row in rows]
        if pa.types.is_string(field.type):
            values = [_as_text(v) for v in values]
        elif pa.types.is_floating(field.type):
            values = [float(v) if v is not None else None for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def cursor_parser(column: Column) -> Callable[[Any], Any]:
    """Turn a cursor value (from the database or from stored JSON) into the column's type."""
    kind = column.data_type

    def parse(raw: Any) -> Any:
        if kind == "timestamp with time zone":
            value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if kind == "timestamp without time zone":
            value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        if kind == "date":
            return raw if isinstance(raw, date) else date.fromisoformat(str(raw))
        if kind in _INTS:
            return int(raw)
        if kind == "numeric":
            return Decimal(str(raw))
        if kind in ("real", "double precision"):
            return float(raw)
        if kind in ("text", "character varying", "character", "uuid"):
            return str(raw)
        raise AgentError(f"a {kind} column cannot be a cursor", code="invalid_cursor")

    return parse


async def collect_postgres(
    source: PostgresSource,
    ctx: ActionContext,
    *,
    incremental: Incremental | None,
    previous: CursorState | None,
    columns: list[str] | None,
    chunk_size: int,
) -> dict[str, Any]:
    """Stream the table (rows new since `previous`) into Parquet chunks; manifests + cursor."""
    if not source.table:
        raise AgentError("collecting from PostgreSQL needs source.table", code="invalid_source")
    root = DataRoot.from_setting(ctx.settings.data_root)
    out = root.run_dir(ctx.run_id, ctx.step_id)
    await asyncio.to_thread(staging.reset_dir, root, out)
    secrets: list[str] = []
    try:
        async with (
            postgres_engine(source, ctx.settings) as (engine, secrets),
            engine.connect() as conn,
        ):
            return await _stream(
                conn, source, root, out, incremental, previous, columns, chunk_size
            )
    except CONNECT_ERRORS as exc:
        raise AgentError(
            scrub(f"database error: {type(exc).__name__}: {exc}", secrets),
            code="source_unavailable",
            retryable=True,
        ) from exc


async def _stream(
    conn: Any,
    source: PostgresSource,
    root: DataRoot,
    out: str,
    incremental: Incremental | None,
    previous: CursorState | None,
    wanted: list[str] | None,
    chunk_size: int,
) -> dict[str, Any]:
    table_name = source.table
    assert table_name is not None
    schema = source.db_schema or (await conn.execute(text("SELECT current_schema()"))).scalar_one()
    found = await table_columns(conn, schema=schema, table=table_name)
    if (schema, table_name) not in found:
        raise AgentError(f"table {schema}.{table_name} not found", code="table_not_found")
    by_name = {c.name: c for c in found[(schema, table_name)]}
    if wanted is not None and (not wanted or len(set(wanted)) != len(wanted)):
        raise AgentError(
            "columns: name each column once (null or leave it out for all)",
            code="invalid_columns",
        )
    # The cursor and key columns join a selection below: the window and the dedup need them.
    names = list(wanted) if wanted else list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise AgentError(f"unknown columns: {', '.join(unknown)}", code="unknown_column")
    window = None
    cursor_col = None
    key_cols: list[str] = []
    if incremental:
        cursor_col = incremental.field
        if cursor_col not in by_name:
            raise AgentError(f"unknown cursor column {cursor_col!r}", code="unknown_column")
        if cursor_col not in names:
            names.append(cursor_col)
        keys = await primary_keys(conn, schema=schema, table=table_name)
        key_cols = incremental.key or keys.get((schema, table_name), [])
        missing = [k for k in key_cols if k not in by_name]
        if missing:
            raise AgentError(f"unknown key columns: {', '.join(missing)}", code="unknown_column")
        names.extend(k for k in key_cols if k not in names)
        window = IncrementalWindow(
            previous,
            field=cursor_col,
            lag=incremental.lag,
            initial=incremental.initial_value,
            parse=cursor_parser(by_name[cursor_col]),
        )
    arrow_schema = pa.schema([(n, arrow_type(by_name[n])) for n in names])
    tbl = sa.table(table_name, *(sa.column(n) for n in names), schema=schema)
    stmt = sa.select(*(tbl.c[n] for n in names))
    if window is not None and cursor_col is not None:
        if window.lower_bound is not None:
            stmt = stmt.where(tbl.c[cursor_col] >= sa.bindparam("start", window.lower_bound))
        stmt = stmt.order_by(tbl.c[cursor_col])
    position = {n: i for i, n in enumerate(names)}
    files: list[dict[str, Any]] = []
    rows_read = 0
    # yield_per: the server-side cursor fetches chunk_size rows per round trip.
    result = await conn.stream(stmt.execution_options(yield_per=chunk_size))
    async for chunk in result.partitions(chunk_size):
        rows_read += len(chunk)
        if window is not None and cursor_col is not None:
            chunk = [r for r in chunk if _is_new(window, r, names, key_cols, position, cursor_col)]
        if not chunk:
            continue
        dest = posixpath.join(out, f"chunk-{len(files) + 1:05d}.parquet")
        table = await asyncio.to_thread(_to_table, chunk, names, arrow_schema)
        files.append(await asyncio.to_thread(staging.write_parquet, root, dest, table))
    return {
        "kind": "postgres",
        "table": f"{schema}.{table_name}",
        "files": files,
        "count": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "rows": sum(f["rows"] for f in files),
        "rows_read": rows_read,
        "duplicates_skipped": window.duplicates if window else 0,
        "schema": {f.name: str(f.type) for f in arrow_schema},
        **Completeness(read=rows_read).fields(),  # no count(*) first: a table announces none
        "cursor": window.state() if window else None,
    }


def _is_new(
    window: IncrementalWindow,
    row: Any,
    names: list[str],
    key_cols: list[str],
    position: dict[str, int],
    cursor_col: str,
) -> bool:
    if key_cols:
        key = json.dumps([row[position[k]] for k in key_cols], default=str)
    else:
        key = record_key(dict(zip(names, row, strict=True)))
    return window.consider(key, row[position[cursor_col]])
