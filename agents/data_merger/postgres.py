"""Loading a batch into a PostgreSQL table in one transaction (append, replace, or upsert).

The batch is COPYed into a temporary table, then applied with one statement per effect:
`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE row IS DISTINCT FROM` for merge (so an
unchanged row is not rewritten and re-running a batch changes nothing), `DELETE ... USING` for
hard deletes. A ledger table `_merger_loads` in the target schema remembers each batch's
fingerprint and result in the same transaction, so a repeated batch is answered, not reapplied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.base.actions import AgentError
from agents.data_converter.schema import schema_names
from agents.data_merger.merging import MergeSpec

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# The merger's own bookkeeping in each target schema; no dataset may take its name.
LOADS_TABLE = "_merger_loads"
_BATCH, _DELETES = "_merger_batch", "_merger_deletes"


def target_schema(requested: str | None, allowed: list[str]) -> str:
    """The schema a load writes to: one named in AGENT_TARGET_SCHEMAS, never anything else.

    An allowlist, not a deny-list of known platform tables: the platform's tables live in a
    schema of their own that settings refuse to list, so no name a spec sends can reach them.
    """
    schema = requested or allowed[0]
    if schema not in allowed:
        raise AgentError(
            f"target.schema: {schema!r} is not a merge target; allowed: {', '.join(allowed)} "
            "(AGENT_TARGET_SCHEMAS)",
            code="invalid_target",
        )
    return schema


def quote(identifier: str) -> str:
    """A checked, double-quoted SQL identifier."""
    if not IDENTIFIER.match(identifier):
        raise AgentError(
            f"invalid SQL identifier {identifier!r}: letters, digits and '_' only",
            code="invalid_target",
        )
    return f'"{identifier}"'


def pg_type(dtype: pl.DataType) -> str:
    """The PostgreSQL column type for a polars type."""
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    if isinstance(dtype, pl.Decimal):
        return f"numeric({dtype.precision},{dtype.scale})" if dtype.precision else "numeric"
    if isinstance(dtype, pl.List | pl.Array | pl.Struct):
        return "jsonb"
    simple = {
        pl.Int8: "smallint",
        pl.Int16: "smallint",
        pl.UInt8: "smallint",
        pl.Int32: "integer",
        pl.UInt16: "integer",
        pl.Int64: "bigint",
        pl.UInt32: "bigint",
        pl.UInt64: "numeric",
        pl.Float32: "real",
        pl.Float64: "double precision",
        pl.Boolean: "boolean",
        pl.Date: "date",
        pl.Time: "time",
        pl.Duration: "interval",
        pl.Binary: "bytea",
    }
    return simple.get(type(dtype), "text")


def _records(frame: pl.DataFrame) -> Iterator[tuple[Any, ...]]:
    """The rows as tuples for COPY, produced lazily (no second copy of the batch in memory)."""
    categorical = [c for c, t in frame.schema.items() if isinstance(t, pl.Categorical | pl.Enum)]
    if categorical:
        frame = frame.with_columns(pl.col(categorical).cast(pl.String))
    nested = {
        i for i, t in enumerate(frame.dtypes) if isinstance(t, pl.List | pl.Array | pl.Struct)
    }
    if not nested:
        yield from frame.iter_rows()
        return
    # Lists and structs go to jsonb columns, which asyncpg takes as JSON text.
    for row in frame.iter_rows():
        yield tuple(
            json.dumps(v, default=str) if i in nested and v is not None else v
            for i, v in enumerate(row)
        )


async def _copy(conn: AsyncConnection, table: str, frame: pl.DataFrame) -> None:
    columns = ", ".join(f"{quote(c)} {pg_type(t)}" for c, t in frame.schema.items())
    await conn.execute(text(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP"))
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(table, records=_records(frame), columns=frame.columns)


async def _existing_columns(conn: AsyncConnection, schema: str, table: str) -> list[str]:
    rows = await conn.execute(
        text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = :table "
            "ORDER BY ordinal_position"
        ),
        {"schema": schema, "table": table},
    )
    return [r[0] for r in rows]


async def _has_unique_key(conn: AsyncConnection, schema: str, table: str, key: list[str]) -> bool:
    rows = await conn.execute(
        text(
            "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE c.relname = :table AND n.nspname = :schema "
            "AND i.indisunique GROUP BY i.indexrelid"
        ),
        {"schema": schema, "table": table},
    )
    return sorted(key) in [sorted(r[0]) for r in rows]


async def _checksum(conn: AsyncConnection, target: str, order: list[str]) -> str:
    """sha256 over the table's rows as JSON, in primary-key (or all-column) order, streamed."""
    digest = hashlib.sha256()
    ordering = ", ".join(quote(c) for c in order)
    result = await conn.stream(
        text(f"SELECT row_to_json(t)::text FROM {target} AS t ORDER BY {ordering}")
    )
    async for row in result:
        digest.update(row[0].encode())
        digest.update(b"\n")
    return digest.hexdigest()


async def load(
    conn: AsyncConnection,
    *,
    table: str,
    schema: str,
    batch: pl.DataFrame,
    deletes: pl.DataFrame | None,
    spec: MergeSpec,
    fingerprint: str,
) -> dict[str, Any]:
    """Apply `batch` to `schema.table` inside the caller's transaction; the load's result.

    `schema` is one `target_schema` allowed; every statement names it, so the connection's
    search_path plays no part in where rows go.
    """
    if table == LOADS_TABLE:
        raise AgentError(
            f"{table!r} is the merger's own ledger; choose another", code="invalid_target"
        )
    target = f"{quote(schema)}.{quote(table)}"
    qualifier = f"{quote(schema)}."
    label = f"{schema}.{table}"
    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"))
    await conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {qualifier}_merger_loads (target text NOT NULL, "
            "fingerprint text NOT NULL, result jsonb NOT NULL, loaded_at timestamptz NOT NULL "
            "DEFAULT now(), PRIMARY KEY (target, fingerprint))"
        )
    )
    stored = await conn.execute(
        text(f"SELECT result FROM {qualifier}_merger_loads WHERE target = :t AND fingerprint = :f"),
        {"t": label, "f": fingerprint},
    )
    if (previous := stored.scalar()) is not None:
        return {**previous, "replayed": True}

    key = spec.primary_key
    existing = await _existing_columns(conn, schema, table)
    if not existing:
        columns = [f"{quote(c)} {pg_type(t)}" for c, t in batch.schema.items()]
        if key:
            columns.append(f"PRIMARY KEY ({', '.join(quote(c) for c in key)})")
        await conn.execute(text(f"CREATE TABLE {target} ({', '.join(columns)})"))
    else:
        for column, dtype in batch.schema.items():
            if column not in existing:
                await conn.execute(
                    text(f"ALTER TABLE {target} ADD COLUMN {quote(column)} {pg_type(dtype)}")
                )
        if spec.disposition == "merge" and not await _has_unique_key(conn, schema, table, key):
            raise AgentError(
                f"table {label!r} has no unique constraint on ({', '.join(key)}), which merge "
                "needs",
                code="invalid_target",
            )

    await _copy(conn, _BATCH, batch)
    names = ", ".join(quote(c) for c in batch.columns)
    inserted = updated = deleted = 0
    if spec.disposition == "replace":
        deleted = (await conn.execute(text(f"DELETE FROM {target}"))).rowcount
    if spec.disposition in ("replace", "append"):
        insert = f"INSERT INTO {target} ({names}) SELECT {names} FROM {_BATCH}"
        inserted = (await conn.execute(text(insert))).rowcount
    else:
        values = [c for c in batch.columns if c not in key]
        conflict = ", ".join(quote(c) for c in key)
        if values:
            sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in values)
            old = ", ".join(f"{target}.{quote(c)}" for c in values)
            new = ", ".join(f"EXCLUDED.{quote(c)}" for c in values)
            action = f"DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
        else:
            action = "DO NOTHING"
        rows = await conn.execute(
            text(
                f"INSERT INTO {target} ({names}) SELECT {names} FROM {_BATCH} "
                f"ON CONFLICT ({conflict}) {action} RETURNING (xmax = 0) AS inserted"
            )
        )
        flags = [r[0] for r in rows]
        inserted, updated = sum(flags), len(flags) - sum(flags)
        if deletes is not None and deletes.height:
            await _copy(conn, _DELETES, deletes)
            match = " AND ".join(f"{target}.{quote(c)} = d.{quote(c)}" for c in key)
            deleted = (
                await conn.execute(text(f"DELETE FROM {target} USING {_DELETES} d WHERE {match}"))
            ).rowcount
    total = (await conn.execute(text(f"SELECT count(*) FROM {target}"))).scalar_one()
    order = key or await _existing_columns(conn, schema, table)
    result = {
        "target": "postgres",
        "table": label,
        "rows": total,
        "inserted": inserted,
        "updated": updated,
        "unchanged": batch.height - inserted - updated if spec.disposition == "merge" else 0,
        "deleted": deleted,
        "checksum": await _checksum(conn, target, order),
        "schema": schema_names(batch.schema),
        "primary_key": key,
        "write_disposition": spec.disposition,
        "replayed": False,
    }
    await conn.execute(
        text(
            f"INSERT INTO {qualifier}_merger_loads (target, fingerprint, result) "
            "VALUES (:t, :f, CAST(:r AS jsonb))"
        ),
        {"t": label, "f": fingerprint, "r": json.dumps(result)},
    )
    return result
