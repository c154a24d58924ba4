"""Collecting from PostgreSQL: Arrow batches streamed from the table, written as Parquet.

The catalog (columns, keys) is read over SQLAlchemy/asyncpg; the rows come as Arrow record
batches over ADBC (`pg_arrow`), never a Python object per row, and every `chunk_size` rows
become one Parquet file, so the table never sits in memory whole.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agents.base.actions import AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.security import pinned_pg_target, scrub
from agents.base.sources.models import PostgresSource, postgres_url
from agents.base.sources.postgres import (
    CONNECT_ERRORS,
    Column,
    primary_keys,
    table_columns,
)
from agents.base.storage import DataRoot
from agents.data_collector import pg_arrow, pg_query, staging
from agents.data_collector.cursor import CursorState, IncrementalWindow, record_key, to_json
from agents.data_collector.rest import Incremental

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
    if source.tables is not None:
        raise AgentError(
            "source.tables is a whole schema: the sql_database workflow plans it "
            "(plan_tables) and collects one table at a time",
            code="invalid_source",
        )
    if not source.table and source.query is None:
        raise AgentError(
            "collecting from PostgreSQL needs source.table or source.query", code="invalid_source"
        )
    bound = pg_query.bind(source.query, source.params) if source.query is not None else None
    root = DataRoot.from_setting(ctx.settings.data_root)
    out = staging.collect_dir(root, ctx)
    await asyncio.to_thread(staging.reset_dir, root, out)
    url, secrets = postgres_url(source, ctx.settings)
    pg_arrow.check_query(url)
    try:
        # One SSRF check, one pinned address for both connections: the catalog's (asyncpg)
        # and the rows' (ADBC), so a name that re-resolves elsewhere reaches nothing new.
        ssl_mode = url.query.get("ssl")
        target = await pinned_pg_target(
            url.host or "localhost",
            url.port or 5432,
            ctx.settings,
            sslmode=ssl_mode if isinstance(ssl_mode, str) else None,
        )
        connect_args = {"timeout": source.connect_timeout_s, **target.connect_args()}
        engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            async with engine.connect() as conn:
                plan = await _plan(conn, source, bound, incremental, previous, columns)
        finally:
            await engine.dispose()
        dsn = pg_arrow.conninfo(url, target, timeout_s=source.connect_timeout_s)
        return await _stream(dsn, plan, root, out, chunk_size)
    except pg_arrow.DbError as exc:
        if not pg_arrow.is_transient(exc):
            raise AgentError(
                scrub(f"the source refused the read: {type(exc).__name__}: {exc}", secrets),
                code="read_refused",
            ) from exc
        raise AgentError(
            scrub(f"database error: {type(exc).__name__}: {exc}", secrets),
            code="source_unavailable",
            retryable=True,
        ) from exc
    except CONNECT_ERRORS as exc:
        raise AgentError(
            scrub(f"database error: {type(exc).__name__}: {exc}", secrets),
            code="source_unavailable",
            retryable=True,
        ) from exc
    except pa.ArrowInvalid as exc:
        if pg_arrow.is_server_error(exc):
            transient = pg_arrow.connection_lost(exc)
            raise AgentError(
                scrub(f"the source failed the read: {exc}", secrets),
                code="source_unavailable" if transient else "read_refused",
                retryable=transient,
            ) from exc
        raise AgentError(
            scrub(f"a value does not fit its column type: {exc}", secrets),
            code="invalid_value",
        ) from exc


@dataclass
class _Plan:
    label: str  # what was read: schema.table, or "query"
    names: list[str]
    arrow_schema: pa.Schema
    sql: str
    settings: dict[str, str]  # session settings the SQL reads (query params, lower bound)
    window: IncrementalWindow | None
    cursor_col: str | None
    key_cols: list[str]


async def _relation(
    conn: Any, source: PostgresSource, bound: pg_query.BoundQuery | None
) -> tuple[str, str, dict[str, Column], list[str]]:
    """What the rows come from: (label, FROM clause, columns by name, primary key)."""
    if bound is not None:
        found = await pg_query.describe(conn, bound)
        return "query", f"({bound.sql}) AS ingest_query", {c.name: c for c in found}, []
    table_name = source.table
    assert table_name is not None
    schema = source.db_schema or (await conn.execute(text("SELECT current_schema()"))).scalar_one()
    found_tables = await table_columns(conn, schema=schema, table=table_name)
    if (schema, table_name) not in found_tables:
        raise AgentError(f"table {schema}.{table_name} not found", code="table_not_found")
    keys = await primary_keys(conn, schema=schema, table=table_name)
    return (
        f"{schema}.{table_name}",
        f"{pg_arrow.ident(schema)}.{pg_arrow.ident(table_name)}",
        {c.name: c for c in found_tables[(schema, table_name)]},
        keys.get((schema, table_name), []),
    )


async def _plan(
    conn: Any,
    source: PostgresSource,
    bound: pg_query.BoundQuery | None,
    incremental: Incremental | None,
    previous: CursorState | None,
    wanted: list[str] | None,
) -> _Plan:
    label, relation, by_name, primary_key = await _relation(conn, source, bound)
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
        # A query has no primary key: without incremental.key, the whole row is the key.
        key_cols = incremental.key or primary_key
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
    selected = ", ".join(pg_arrow.select_expr(n, by_name[n].data_type) for n in names)
    sql = f"SELECT {selected} FROM {relation}"
    settings = dict(bound.settings) if bound is not None else {}
    if window is not None and cursor_col is not None:
        if window.lower_bound is not None:
            cast = pg_arrow.BOUND_CASTS[by_name[cursor_col].data_type]
            settings[pg_arrow.LOWER_BOUND_SETTING] = str(to_json(window.lower_bound))
            setting = f"current_setting('{pg_arrow.LOWER_BOUND_SETTING}')::{cast}"
            sql += f" WHERE {pg_arrow.ident(cursor_col)} >= {setting}"
        sql += f" ORDER BY {pg_arrow.ident(cursor_col)}"
    return _Plan(
        label=label,
        names=names,
        arrow_schema=arrow_schema,
        sql=sql,
        settings=settings,
        window=window,
        cursor_col=cursor_col,
        key_cols=key_cols,
    )


async def _stream(
    dsn: str, plan: _Plan, root: DataRoot, out: str, chunk_size: int
) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    rows_read = 0
    window = plan.window
    query = await asyncio.to_thread(
        pg_arrow.ArrowQuery, dsn, plan.sql, plan.arrow_schema, plan.settings
    )
    try:
        batches = query.batches()
        pending: list[pa.RecordBatch] = []
        held = 0
        done = False
        while not done:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                done = True
            else:
                rows_read += batch.num_rows
                if window is not None:
                    batch = _new_rows(window, batch, plan)
                if batch.num_rows:
                    pending.append(batch)
                    held += batch.num_rows
            # Exactly chunk_size rows per file (the last one less): memory stays one chunk
            # plus one driver batch, whatever the table size.
            while held >= chunk_size or (done and held):
                whole = pa.Table.from_batches(pending, schema=plan.arrow_schema)
                chunk, rest = whole.slice(0, chunk_size), whole.slice(chunk_size)
                pending, held = rest.to_batches(), rest.num_rows
                dest = posixpath.join(out, f"chunk-{len(files) + 1:05d}.parquet")
                files.append(await asyncio.to_thread(staging.write_parquet, root, dest, chunk))
    finally:
        await asyncio.to_thread(query.close)
    return {
        "kind": "postgres",
        "table": plan.label,
        "files": files,
        "count": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "rows": sum(f["rows"] for f in files),
        "rows_read": rows_read,
        "duplicates_skipped": window.duplicates if window else 0,
        "schema": {f.name: str(f.type) for f in plan.arrow_schema},
        **Completeness(read=rows_read).fields(),  # no count(*) first: a table announces none
        "cursor": window.state() if window else None,
    }


def _new_rows(window: IncrementalWindow, batch: pa.RecordBatch, plan: _Plan) -> pa.RecordBatch:
    """The rows of `batch` the window lets through (only cursor and key columns go to Python)."""
    assert plan.cursor_col is not None
    values = batch.column(plan.cursor_col).to_pylist()
    if plan.key_cols:
        key_values = [batch.column(k).to_pylist() for k in plan.key_cols]
        keys = [json.dumps(list(k), default=str) for k in zip(*key_values, strict=True)]
    else:
        keys = [record_key(row) for row in batch.to_pylist()]
    mask = [window.consider(k, v) for k, v in zip(keys, values, strict=True)]
    if all(mask):
        return batch
    return batch.filter(pa.array(mask, type=pa.bool_()))
