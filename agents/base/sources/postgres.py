"""PostgreSQL sources: catalog queries (tables, columns, keys) and the connector's probes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.base.context import ActionContext
from agents.base.security import HostUnresolvable, scrub
from agents.base.sources.heuristics import latency_summary, recommend_postgres
from agents.base.sources.models import PostgresSource, display_url, postgres_engine, postgres_url

_SYSTEM = (
    "c.table_schema NOT IN ('pg_catalog', 'information_schema') "
    "AND c.table_schema NOT LIKE 'pg\\_toast%'"
)
# What can go wrong reaching a database: driver errors come wrapped by SQLAlchemy, socket
# errors and timeouts sometimes raw.
CONNECT_ERRORS = (SQLAlchemyError, OSError, asyncio.TimeoutError, HostUnresolvable)


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    nullable: bool
    precision: int | None = None
    scale: int | None = None


async def table_columns(
    conn: AsyncConnection, *, schema: str | None, table: str | None
) -> dict[tuple[str, str], list[Column]]:
    """Columns of the user tables and views, by (schema, table), in declaration order."""
    where = [_SYSTEM]
    params: dict[str, Any] = {}
    if schema:
        where.append("c.table_schema = :schema")
        params["schema"] = schema
    if table:
        where.append("c.table_name = :table")
        params["table"] = table
    rows = await conn.execute(
        text(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable, "
            "c.numeric_precision, c.numeric_scale FROM information_schema.columns c "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY c.table_schema, c.table_name, c.ordinal_position"
        ),
        params,
    )
    tables: dict[tuple[str, str], list[Column]] = {}
    for r in rows:
        tables.setdefault((r[0], r[1]), []).append(Column(r[2], r[3], r[4] == "YES", r[5], r[6]))
    return tables


async def primary_keys(
    conn: AsyncConnection, *, schema: str | None, table: str | None
) -> dict[tuple[str, str], list[str]]:
    """Primary-key columns by (schema, table), in key order."""
    rows = await conn.execute(
        text(
            "SELECT k.table_schema, k.table_name, k.column_name "
            "FROM information_schema.table_constraints t "
            "JOIN information_schema.key_column_usage k "
            "ON k.constraint_schema = t.constraint_schema "
            "AND k.constraint_name = t.constraint_name "
            "AND k.table_name = t.table_name "
            "WHERE t.constraint_type = 'PRIMARY KEY' "
            "AND (CAST(:schema AS text) IS NULL OR k.table_schema = :schema) "
            "AND (CAST(:table AS text) IS NULL OR k.table_name = :table) "
            "ORDER BY k.table_schema, k.table_name, k.ordinal_position"
        ),
        {"schema": schema, "table": table},
    )
    keys: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        keys.setdefault((r[0], r[1]), []).append(r[2])
    return keys


async def table_stats(
    conn: AsyncConnection, *, schema: str | None, table: str | None
) -> dict[tuple[str, str], tuple[int | None, int]]:
    """Estimated rows (None before the first ANALYZE) and total bytes by (schema, table)."""
    rows = await conn.execute(
        text(
            "SELECT n.nspname, c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm') "
            "AND (CAST(:schema AS text) IS NULL OR n.nspname = :schema) "
            "AND (CAST(:table AS text) IS NULL OR c.relname = :table)"
        ),
        {"schema": schema, "table": table},
    )
    return {(r[0], r[1]): (r[2] if r[2] >= 0 else None, int(r[3])) for r in rows}


async def test_postgres(
    source: PostgresSource, ctx: ActionContext, *, probes: int
) -> dict[str, Any]:
    """Connect, time round trips, read the server's limits; recommend chunking."""
    url, _ = postgres_url(source, ctx.settings)
    shown = display_url(url)
    started = time.perf_counter()
    secrets: list[str] = []
    try:
        async with (
            postgres_engine(source, ctx.settings) as (engine, secrets),
            engine.connect() as conn,
        ):
            connected = (time.perf_counter() - started) * 1000.0
            samples = []
            for _ in range(probes):
                t0 = time.perf_counter()
                await conn.execute(text("SELECT 1"))
                samples.append((time.perf_counter() - t0) * 1000.0)
            version = (await conn.execute(text("SHOW server_version"))).scalar_one()
            max_conn = int((await conn.execute(text("SHOW max_connections"))).scalar_one())
            row_bytes = None
            if source.table:
                stats = await table_stats(conn, schema=source.db_schema, table=source.table)
                for rows, size in stats.values():
                    row_bytes = size / rows if rows else None
    except CONNECT_ERRORS as exc:
        elapsed = (time.perf_counter() - started) * 1000.0
        return {
            "reachable": False,
            "kind": "postgres",
            "url": shown,
            "reason": scrub(f"{type(exc).__name__}: {exc}", secrets),
            "latency_ms": round(elapsed, 3),
            "capabilities": [],
            "recommended": {"concurrency": 1, "batch_size": 1000, "basis": "unreachable"},
        }
    summary = latency_summary(samples)
    return {
        "reachable": True,
        "kind": "postgres",
        "url": shown,
        "server_version": version,
        "connect_ms": round(connected, 3),
        "latency_ms": summary["median_ms"],
        "latency": {**summary, "probes": len(samples)},
        "max_connections": max_conn,
        "capabilities": ["sql", "list_tables", "server_side_cursor", "incremental_cursor"],
        "recommended": recommend_postgres(
            summary["median_ms"], max_connections=max_conn, row_bytes=row_bytes
        ),
    }


async def describe_postgres(
    source: PostgresSource, ctx: ActionContext, *, max_tables: int
) -> dict[str, Any]:
    """Tables and views with their columns, primary keys, estimated rows and sizes."""
    url, _ = postgres_url(source, ctx.settings)
    secrets: list[str] = []
    try:
        async with (
            postgres_engine(source, ctx.settings) as (engine, secrets),
            engine.connect() as conn,
        ):
            scope = {"schema": source.db_schema, "table": source.table}
            columns = await table_columns(conn, **scope)
            keys = await primary_keys(conn, **scope)
            stats = await table_stats(conn, **scope)
    except CONNECT_ERRORS as exc:
        return {
            "reachable": False,
            "kind": "postgres",
            "url": display_url(url),
            "reason": scrub(f"{type(exc).__name__}: {exc}", secrets),
            "tables": [],
        }
    missing: list[str] = []
    if source.tables is not None:
        # A whole-schema source's list: only those tables, and the ones not found named.
        columns = {k: v for k, v in columns.items() if k[1] in source.tables}
        missing = sorted(set(source.tables) - {name for _, name in columns})
    tables = []
    for (schema, name), cols in list(columns.items())[:max_tables]:
        rows, size = stats.get((schema, name), (None, 0))
        tables.append(
            {
                "schema": schema,
                "name": name,
                "columns": [
                    {"name": c.name, "type": c.data_type, "nullable": c.nullable} for c in cols
                ],
                "primary_key": keys.get((schema, name), []),
                "estimated_rows": rows,
                "bytes": size,
            }
        )
    return {
        "reachable": True,
        "kind": "postgres",
        "url": display_url(url),
        "tables": tables,
        "count": len(columns),
        "truncated": len(columns) > max_tables,
        **({"missing": missing} if source.tables is not None else {}),
    }
