"""Loading a batch into a PostgreSQL table inside the caller's transaction.

The batch travels as Arrow record batches encoded by `pgpq` into PostgreSQL's binary COPY
format, chunk by chunk (the next chunk is encoded in a thread while the current one is sent),
so no Python object per value is ever made and memory stays bounded by the chunk size. Nested
lists and structs go as JSON text into jsonb columns; a type pgpq cannot encode goes as text.

A new table, an append and a replace COPY straight into the table (a new table gets its key
index after the COPY, which is faster than maintaining it row by row). A merge COPYs into a
temporary table and applies it with one statement per effect: upsert is
`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE ... IS DISTINCT FROM` (an unchanged row is not
rewritten) and `DELETE ... USING` for hard deletes; scd2 closes the current version of a
changed, deleted or absent key and inserts the new versions. Nothing reads the whole table
except what scd2's `retire_absent` has to (every current key).

Counts: `inserted` rows (scd2: keys new to the table), `updated` rows whose values changed
(scd2: keys that got a new version), `unchanged` batch rows already there as they are,
`deleted` rows removed (scd2: current versions closed by a hard delete or by being absent),
`written` the rows the load's statements inserted, updated or deleted (an scd2 change counts
twice: the closed version and the new one), as the DuckDB destination counts. `version`
counts the loads that changed the table (rows or columns), `rows` is the previous load's
`rows` plus what this one added and removed; both come from the ledger `_merger_loads`, which
holds each batch's fingerprint and result in the same transaction, so a repeated batch is
answered, not reapplied.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import pgpq
import polars as pl
import pyarrow as pa
from pgpq import encoders
from pgpq import schema as pg_wire
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.base.actions import AgentError
from agents.data_converter.schema import schema_names
from agents.data_merger.contracts import ContractReport, apply_contract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.identifiers import LOADS_TABLE, quote
from agents.data_merger.merging import IS_CURRENT, SCD2_COLUMNS, VALID_FROM, VALID_TO

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_BATCH, _DELETES, _CHANGES = "_merger_batch", "_merger_deletes", "_merger_changes"
# Rows per COPY chunk: about 6 MB on the wire for six scalar columns.
_CHUNK_ROWS = 100_000
# Types pgpq encodes as the PostgreSQL type `pg_type` names for them.
_ENCODABLE = (
    pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64,
    pl.Float32, pl.Float64, pl.Boolean, pl.String, pl.Binary, pl.Date, pl.Time,
    pl.Datetime, pl.Duration, pl.Decimal,
)  # fmt: skip
# `pg_type`'s short names as `format_type` spells them, to compare with a table's columns.
_CANONICAL = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
}
_PG_TO_POLARS: dict[str, pl.DataType] = {
    "smallint": pl.Int16(),
    "integer": pl.Int32(),
    "bigint": pl.Int64(),
    "real": pl.Float32(),
    "double precision": pl.Float64(),
    "boolean": pl.Boolean(),
    "text": pl.String(),
    "bytea": pl.Binary(),
    "date": pl.Date(),
    "interval": pl.Duration("us"),
}
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_TEXT = re.compile(r"^character( varying)?(\(\d+\))?$")
_TIMES = re.compile(r"^(time|timestamp)(\(\d\))? with(out)? time zone$")
_INTEGERS = {"smallint", "integer", "bigint"}


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


def polars_type(column_type: str) -> pl.DataType | None:
    """The polars type of a column `format_type` describes; None when there is none to name.

    jsonb has none (its values are whatever lists or structs the batches held) and neither has
    an unconstrained numeric (no scale to cast to): those are compared as PostgreSQL types.
    """
    if (known := _PG_TO_POLARS.get(column_type)) is not None:
        return known
    if match := _NUMERIC.match(column_type):
        return pl.Decimal(int(match[1]), int(match[2]))
    if _TEXT.match(column_type):
        return pl.String()
    if match := _TIMES.match(column_type):
        if match[1] == "time":
            return pl.Time() if match[3] else None
        return pl.Datetime("us") if match[3] else pl.Datetime("us", "UTC")
    return None


def _canonical(column_type: str) -> str:
    return _CANONICAL.get(column_type, column_type)


@dataclass(frozen=True)
class _Target:
    schema: str
    table: str

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.table)}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass
class _Table:
    """The target table as it is before the load (no columns: it does not exist)."""

    types: dict[str, str] = field(default_factory=dict)  # column -> format_type
    exists: bool = False

    @property
    def scd2(self) -> bool:
        return all(c in self.types for c in SCD2_COLUMNS)


@dataclass
class _Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    written: int = 0


@dataclass
class _Ledger:
    """What the ledger says of the target before this load."""

    previous: dict[str, Any] | None
    loads: int  # ledger rows for the target, for results stored before `version` existed


async def load(
    conn: AsyncConnection, request: LoadRequest, *, table: str, schema: str
) -> dict[str, Any]:
    """Apply the request's batch to `schema.table` inside the caller's transaction.

    The caller holds the table's advisory lock and commits; any failure leaves the table and
    the ledger as they were once the caller rolls back. `schema` is one `target_schema`
    allowed; every statement names it, so the connection's search_path plays no part.
    """
    if table == LOADS_TABLE:
        raise AgentError(
            f"{table!r} is the merger's own ledger; choose another", code="invalid_target"
        )
    spec = request.spec
    target = _Target(schema, table)
    label = target.label
    ledger = f"{quote(schema)}.{LOADS_TABLE}"
    await _ensure_ledger(conn, schema)
    stored = await conn.execute(
        text(f"SELECT result FROM {ledger} WHERE target = :t AND fingerprint = :f"),
        {"t": label, "f": request.fingerprint},
    )
    if (replayed := stored.scalar()) is not None:
        return {**replayed, "replayed": True}

    before = await _read_table(conn, target)
    scd2 = spec.disposition == "merge" and spec.strategy == "scd2"
    await _check_target(conn, target, before, request, scd2)
    batch, report = _prepared(request, before, target, scd2)
    columns = batch.collect_schema()
    for column in columns:
        quote(column)
    discarded = not before.exists and request.contract.tables in ("discard_row", "discard_value")

    counts = _Counts()
    rows = 0
    changed_columns = False
    if before.exists or (columns and not discarded):
        ledger_state = await _ledger_state(conn, ledger, label)
        if not before.exists:
            counts = await _create_and_fill(conn, target, batch, request, scd2)
            rows = counts.inserted
            changed_columns = True
        else:
            exact = _check_types(before, columns, label)
            changed_columns = await _add_columns(conn, target, before, columns)
            previous_rows = await _previous_rows(conn, target, ledger_state)
            counts = await _apply(conn, target, before, batch, request, scd2, exact)
            rows = previous_rows + counts.inserted - counts.deleted
            if scd2:  # closed versions stay; every change adds one
                rows = previous_rows + counts.inserted + counts.updated
            if spec.disposition == "replace":
                rows = counts.inserted
        version = _version(ledger_state) + (1 if changed_columns or counts.written else 0)
    else:
        version = _version(await _ledger_state(conn, ledger, label))

    result: dict[str, Any] = {
        "dataset": request.dataset,
        "target": "postgres",
        "table": label,
        "version": version,
        "rows": rows,
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "deleted": counts.deleted,
        "written": counts.written,
        "schema": schema_names(columns),
        "primary_key": list(spec.primary_key),
        "write_disposition": spec.disposition,
        "strategy": spec.strategy,
        "contract": report.as_dict(),
        "replayed": False,
    }
    await conn.execute(
        text(
            f"INSERT INTO {ledger} (target, fingerprint, result, loaded_at, strategy) "
            "VALUES (:t, :f, CAST(:r AS jsonb), clock_timestamp(), :s)"
        ),
        {"t": label, "f": request.fingerprint, "r": json.dumps(result), "s": spec.strategy},
    )
    return result


async def _ensure_ledger(conn: AsyncConnection, schema: str) -> None:
    qualifier = f"{quote(schema)}."
    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"))
    created = await conn.execute(
        text("SELECT to_regclass(:name) IS NULL"), {"name": f"{qualifier}{LOADS_TABLE}"}
    )
    if created.scalar_one():
        await conn.execute(
            text(
                f"CREATE TABLE {qualifier}{LOADS_TABLE} (target text NOT NULL, "
                "fingerprint text NOT NULL, result jsonb NOT NULL, loaded_at timestamptz NOT "
                "NULL DEFAULT now(), strategy text, PRIMARY KEY (target, fingerprint))"
            )
        )
        await conn.execute(text(f"CREATE INDEX ON {qualifier}{LOADS_TABLE} (target, loaded_at)"))
        return
    # A ledger the earlier loader made has no strategy column. Asked for first, because an
    # ALTER TABLE, even one that changes nothing, would wait for every load into the schema.
    has_strategy = await conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:name) "
            "AND attname = 'strategy' AND NOT attisdropped)"
        ),
        {"name": f"{qualifier}{LOADS_TABLE}"},
    )
    if not has_strategy.scalar_one():
        await conn.execute(
            text(f"ALTER TABLE {qualifier}{LOADS_TABLE} ADD COLUMN IF NOT EXISTS strategy text")
        )


async def _ledger_state(conn: AsyncConnection, ledger: str, label: str) -> _Ledger:
    found = await conn.execute(
        text(
            f"SELECT result, count(*) OVER () FROM {ledger} WHERE target = :t "
            "ORDER BY loaded_at DESC LIMIT 1"
        ),
        {"t": label},
    )
    row = found.first()
    return _Ledger(row[0], int(row[1])) if row else _Ledger(None, 0)


def _version(state: _Ledger) -> int:
    if state.previous is None:
        return 0
    return int(state.previous.get("version", state.loads))


async def _previous_rows(conn: AsyncConnection, target: _Target, state: _Ledger) -> int:
    """The table's rows before the load: the last load's count, counted only without one."""
    if state.previous is not None and "rows" in state.previous:
        return int(state.previous["rows"])
    return int((await conn.execute(text(f"SELECT count(*) FROM {target.sql}"))).scalar_one())


async def _read_table(conn: AsyncConnection, target: _Target) -> _Table:
    # pg_catalog rather than information_schema: format_type spells a column's type with its
    # modifiers (numeric(10,2), character varying(20)) as one string.
    found = await conn.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
        {"schema": target.schema, "table": target.table},
    )
    types = {r[0]: r[1] for r in found}
    return _Table(types, bool(types))


async def _unique_keys(conn: AsyncConnection, target: _Target) -> list[tuple[bool, frozenset[str]]]:
    """The table's unique indexes ON CONFLICT can use: (partial, columns) each."""
    found = await conn.execute(
        text(
            "SELECT i.indpred IS NOT NULL, array_agg(a.attname::text) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE c.relname = :table AND n.nspname = :schema AND i.indisunique "
            "AND i.indimmediate GROUP BY i.indexrelid, i.indpred"
        ),
        {"schema": target.schema, "table": target.table},
    )
    return [(bool(r[0]), frozenset(r[1])) for r in found]


async def _check_target(
    conn: AsyncConnection, target: _Target, before: _Table, request: LoadRequest, scd2: bool
) -> None:
    """Refuse a load the existing table cannot take as asked."""
    spec = request.spec
    label = target.label
    if spec.disposition == "merge" and not spec.primary_key:
        raise AgentError("write_disposition 'merge' needs a primary_key", code="invalid_target")
    if not before.exists:
        return
    if before.scd2 != scd2:
        kind = "an scd2 table" if before.scd2 else "not an scd2 table"
        raise AgentError(
            f"table {label!r} is {kind}; it takes "
            + ("only merges with strategy scd2" if before.scd2 else "no scd2 merge"),
            code="strategy_mismatch",
        )
    if spec.disposition != "merge":
        return
    # scd2's key is its partial unique index (one current version per key); upsert's a full one.
    if (scd2, frozenset(spec.primary_key)) not in await _unique_keys(conn, target):
        raise AgentError(
            f"table {label!r} has no unique constraint on ({', '.join(spec.primary_key)})"
            + (" WHERE _is_current" if scd2 else "")
            + ", which merge needs",
            code="invalid_target",
        )


def _normalised(batch: pl.LazyFrame, before: _Table) -> pl.LazyFrame:
    """Types PostgreSQL cannot hold as they are, as the ones it stores.

    Microseconds are PostgreSQL's finest unit, so finer timestamps are truncated here, before
    the contract compares values (a later batch of the same data then matches the table).
    """
    casts = []
    for name, dtype in batch.collect_schema().items():
        if isinstance(dtype, pl.Datetime | pl.Duration) and dtype.time_unit != "us":
            casts.append(pl.col(name).dt.cast_time_unit("us"))
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            casts.append(pl.col(name).cast(pl.String))
        elif dtype == pl.Null:
            # No values, so no type: the table's, else text.
            existing = before.types.get(name)
            typed = polars_type(existing) if existing else None
            casts.append(pl.col(name).cast(typed or pl.String()))
    return batch.with_columns(casts) if casts else batch


def _prepared(
    request: LoadRequest, before: _Table, target: _Target, scd2: bool
) -> tuple[pl.LazyFrame, ContractReport]:
    """The batch as the contract lets it into the table, with the types it will have there."""
    spec = request.spec
    batch = request.batch
    names = batch.collect_schema().names()
    if spec.hard_delete and spec.hard_delete in names:
        batch = batch.drop(spec.hard_delete)  # a control column, never data
    if scd2 and (managed := [c for c in SCD2_COLUMNS if c in names]):
        raise AgentError(
            f"the batch holds {', '.join(managed)}, which scd2 manages itself",
            code="load_failed",
        )
    missing = [k for k in spec.primary_key if k not in names]
    if spec.disposition == "merge" and missing:
        raise AgentError(
            f"the batch has no column {', '.join(missing)} of the primary key",
            code="missing_column",
        )
    batch = _normalised(batch, before)
    existing: dict[str, pl.DataType] | None = None
    if before.exists:
        batch_types = batch.collect_schema()
        existing = {}
        for column, column_type in before.types.items():
            mapped = polars_type(column_type)
            dtype = batch_types.get(column)
            if mapped is not None and dtype is not None:
                _check_castable(batch, column, dtype, mapped, column_type, target.label)
            # A type with no polars name is left as the batch has it and compared in SQL terms.
            existing[column] = mapped or dtype or pl.String()
    return apply_contract(
        batch,
        existing,
        request.contract,
        table=target.table,
        ignore=frozenset(SCD2_COLUMNS),
    )


def _type_change(column: str, table_type: str, dtype: pl.DataType, label: str) -> AgentError:
    return AgentError(
        f"column {column!r} of table {label!r} is {table_type}; the batch holds {dtype} "
        f"({pg_type(dtype)}), and a column's type is never changed",
        code="schema_type_change",
        details={"column": column, "table_type": table_type, "batch_type": str(dtype)},
    )


def _check_castable(
    batch: pl.LazyFrame,
    column: str,
    dtype: pl.DataType,
    wanted: pl.DataType,
    table_type: str,
    label: str,
) -> None:
    """Refuse a cast polars cannot make at all (a list into text), which the contract would
    otherwise meet as an exception in the middle of its checks."""
    if dtype == wanted:
        return
    if dtype.is_nested() or wanted.is_nested():
        raise _type_change(column, table_type, dtype, label)
    try:
        batch.select(pl.col(column).drop_nulls().head(1).cast(wanted, strict=False)).collect()
    except pl.exceptions.InvalidOperationError as exc:
        raise _type_change(column, table_type, dtype, label) from exc


def _check_types(before: _Table, columns: pl.Schema, label: str) -> bool:
    """Refuse a batch column the table's column cannot take; whether every type is the same.

    After the contract a column PostgreSQL has a polars type for holds that type. The others
    (jsonb, unconstrained numeric, uuid, arrays...) take only the very same type, or an
    integer into numeric and jsonb into json, which PostgreSQL assigns without loss.
    """
    exact = True
    for column, dtype in columns.items():
        table_type = before.types.get(column)
        if table_type is None:
            continue
        batch_type = _canonical(pg_type(dtype))
        if batch_type == table_type:
            continue
        exact = False
        mapped = polars_type(table_type)
        if mapped is not None and mapped == dtype:
            continue  # varchar(n), timestamp(3): PostgreSQL assigns (and checks) the value
        if table_type == "numeric" and (batch_type in _INTEGERS or _NUMERIC.match(batch_type)):
            continue
        if table_type == "json" and batch_type == "jsonb":
            continue
        raise _type_change(column, table_type, dtype, label)
    return exact


async def _add_columns(
    conn: AsyncConnection, target: _Target, before: _Table, columns: pl.Schema
) -> bool:
    added = [c for c in columns if c not in before.types]
    for column in added:
        await conn.execute(
            text(f"ALTER TABLE {target.sql} ADD COLUMN {quote(column)} {pg_type(columns[column])}")
        )
    return bool(added)


def _loaded_at(request: LoadRequest) -> datetime:
    at = request.loaded_at
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _with_validity(batch: pl.LazyFrame, request: LoadRequest) -> pl.LazyFrame:
    """The batch as first versions: valid from the load's time, open-ended, current."""
    stamp = pl.Datetime("us", "UTC")
    return batch.with_columns(
        pl.lit(_loaded_at(request)).cast(stamp).alias(VALID_FROM),
        pl.lit(None, dtype=stamp).alias(VALID_TO),
        pl.lit(True).alias(IS_CURRENT),
    )


async def _create_and_fill(
    conn: AsyncConnection, target: _Target, batch: pl.LazyFrame, request: LoadRequest, scd2: bool
) -> _Counts:
    """Create the table, COPY the batch into it, then build its key index."""
    key = request.spec.primary_key
    if scd2:
        batch = _with_validity(batch, request)
    columns = batch.collect_schema()
    required = {*key, VALID_FROM, IS_CURRENT}
    definitions = [
        f"{quote(c)} {pg_type(t)}" + (" NOT NULL" if c in required else "")
        for c, t in columns.items()
    ]
    await conn.execute(text(f"CREATE TABLE {target.sql} ({', '.join(definitions)})"))
    copied = await _copy(conn, batch, target.table, target.schema)
    names = ", ".join(quote(c) for c in key)
    if scd2:
        await conn.execute(text(f"CREATE UNIQUE INDEX ON {target.sql} ({names}, {VALID_FROM})"))
        await conn.execute(
            text(f"CREATE UNIQUE INDEX ON {target.sql} ({names}) WHERE {IS_CURRENT}")
        )
    elif key:
        await conn.execute(text(f"ALTER TABLE {target.sql} ADD PRIMARY KEY ({names})"))
    return _Counts(inserted=copied, written=copied)


async def _apply(
    conn: AsyncConnection,
    target: _Target,
    before: _Table,
    batch: pl.LazyFrame,
    request: LoadRequest,
    scd2: bool,
    exact: bool,
) -> _Counts:
    """Apply the batch to the existing table with the request's disposition."""
    spec = request.spec
    columns = batch.collect_schema().names()
    counts = _Counts()
    if spec.disposition == "replace":
        counts.deleted = await _count(conn, f"DELETE FROM {target.sql}")
    if spec.disposition in ("replace", "append"):
        if not columns:
            pass  # a batch with no columns holds no rows
        elif exact:
            counts.inserted = await _copy(conn, batch, target.table, target.schema)
        else:
            await _copy_temp(conn, _BATCH, batch)
            names = ", ".join(quote(c) for c in columns)
            insert = f"INSERT INTO {target.sql} ({names}) SELECT {names} FROM {_BATCH}"
            counts.inserted = await _count(conn, insert)
        counts.written = counts.inserted + counts.deleted
        return counts
    batch_rows = await _copy_temp(conn, _BATCH, batch)
    deletes = await _copy_deletes(conn, request, batch)
    if scd2:
        return await _scd2(conn, target, before, columns, batch_rows, request, deletes)
    return await _upsert(conn, target, columns, batch_rows, spec.primary_key, deletes)


async def _copy_deletes(conn: AsyncConnection, request: LoadRequest, batch: pl.LazyFrame) -> bool:
    """COPY the keys to delete, typed as the batch's key after the contract; any there?"""
    if request.deletes is None:
        return False
    key = request.spec.primary_key
    types = batch.collect_schema()
    keys = request.deletes.select(pl.col(k).cast(types[k]) for k in key).unique()
    if not await _copy_temp(conn, _DELETES, keys):
        return False
    # A temporary table has no statistics until analysed; without them a join with the
    # table may be planned as a scan of all of it.
    await conn.execute(text(f"ANALYZE {_DELETES}"))
    return True


def _match(key: list[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in key)


def _differs(columns: list[str], left: str, right: str) -> str:
    old = ", ".join(f"{left}.{quote(c)}" for c in columns)
    new = ", ".join(f"{right}.{quote(c)}" for c in columns)
    return f"ROW({old}) IS DISTINCT FROM ROW({new})"


async def _count(conn: AsyncConnection, sql: str, params: dict[str, Any] | None = None) -> int:
    return int((await conn.execute(text(sql), params or {})).rowcount)


async def _upsert(
    conn: AsyncConnection,
    target: _Target,
    columns: list[str],
    batch_rows: int,
    key: list[str],
    deletes: bool,
) -> _Counts:
    values = [c for c in columns if c not in key]
    if values:
        sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in values)
        action = f"DO UPDATE SET {sets} WHERE {_differs(values, 't', 'EXCLUDED')}"
    else:
        action = "DO NOTHING"
    names = ", ".join(quote(c) for c in columns)
    conflict = ", ".join(quote(k) for k in key)
    # xmax is 0 on a row version this statement inserted, set on one it updated; counted in
    # SQL so that a large batch sends back two numbers, not a row per row.
    written = await conn.execute(
        text(
            f"WITH written AS (INSERT INTO {target.sql} AS t ({names}) "
            f"SELECT {names} FROM {_BATCH} ON CONFLICT ({conflict}) {action} "
            "RETURNING (t.xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
            "FROM written"
        )
    )
    inserted, updated = written.one()
    counts = _Counts(inserted=inserted, updated=updated)
    counts.unchanged = batch_rows - inserted - updated
    if deletes:
        counts.deleted = await _count(
            conn, f"DELETE FROM {target.sql} AS t USING {_DELETES} d WHERE {_match(key, 't', 'd')}"
        )
    counts.written = counts.inserted + counts.updated + counts.deleted
    return counts


async def _scd2(
    conn: AsyncConnection,
    target: _Target,
    before: _Table,
    columns: list[str],
    batch_rows: int,
    request: LoadRequest,
    deletes: bool,
) -> _Counts:
    """Close the current versions of changed, deleted (and absent) keys; insert new versions."""
    spec = request.spec
    key = spec.primary_key
    at = {"at": _loaded_at(request)}
    values = [c for c in columns if c not in key]
    # Columns the batch lacks keep the values of the version a new one supersedes.
    kept = [c for c in before.types if c not in columns and c not in SCD2_COLUMNS]
    await conn.execute(text(f"ANALYZE {_BATCH}"))
    current = f"SELECT * FROM {target.sql} WHERE {IS_CURRENT}"
    changed = f"c.{quote(key[0])} IS NULL" + (f" OR {_differs(values, 'c', 'b')}" if values else "")
    carried = "".join(f", c.{quote(c)}" for c in kept)
    await conn.execute(
        text(
            f"CREATE TEMP TABLE {_CHANGES} ON COMMIT DROP AS SELECT b.*{carried}, "
            f"c.{quote(key[0])} IS NULL AS _merger_is_new FROM {_BATCH} b LEFT JOIN ({current}) c "
            f"ON {_match(key, 'c', 'b')} WHERE {changed}"
        )
    )
    close = (
        f"UPDATE {target.sql} AS t SET {VALID_TO} = CAST(:at AS timestamptz), {IS_CURRENT} = false"
    )
    counts = _Counts()
    counts.updated = await _count(
        conn,
        f"{close} FROM {_CHANGES} ch WHERE t.{IS_CURRENT} AND NOT ch._merger_is_new "
        f"AND {_match(key, 't', 'ch')}",
        at,
    )
    if deletes:
        counts.deleted = await _count(
            conn, f"{close} FROM {_DELETES} d WHERE t.{IS_CURRENT} AND {_match(key, 't', 'd')}", at
        )
    if spec.retire_absent:
        counts.deleted += await _count(
            conn,
            f"{close} WHERE t.{IS_CURRENT} AND NOT EXISTS "
            f"(SELECT 1 FROM {_BATCH} b WHERE {_match(key, 't', 'b')})",
            at,
        )
    names = ", ".join(quote(c) for c in [*columns, *kept])
    added = await _count(
        conn,
        f"INSERT INTO {target.sql} ({names}, {VALID_FROM}, {VALID_TO}, {IS_CURRENT}) "
        f"SELECT {names}, CAST(:at AS timestamptz), NULL, true FROM {_CHANGES}",
        at,
    )
    counts.inserted = added - counts.updated
    counts.unchanged = batch_rows - added
    counts.written = added + counts.updated + counts.deleted
    return counts


async def _copy_temp(conn: AsyncConnection, table: str, frame: pl.LazyFrame) -> int:
    """COPY the frame into a new temporary table `table` (dropped at commit); its rows."""
    definitions = ", ".join(f"{quote(c)} {pg_type(t)}" for c, t in frame.collect_schema().items())
    await conn.execute(text(f"CREATE TEMP TABLE {table} ({definitions}) ON COMMIT DROP"))
    return await _copy(conn, frame, table)


async def _copy(
    conn: AsyncConnection, frame: pl.LazyFrame, table: str, schema_name: str | None = None
) -> int:
    """Binary COPY of the frame into the table's columns of the same names; the rows copied.

    The table's columns must have the frame's `pg_type`s: binary COPY carries no types, so a
    value of another type would be misread, not converted.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    stream = _stream(_encoded(frame))
    try:
        status = await driver.copy_to_table(
            table,
            schema_name=schema_name,
            source=stream,
            columns=frame.collect_schema().names(),
            format="binary",
        )
    except asyncpg.PostgresError as exc:
        # The driver's own error, which SQLAlchemy never saw: refused as its statements are.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AgentError(f"the load was refused: {first}", code="load_failed") from exc
    finally:
        await stream.aclose()
    return int(status.rsplit(" ", 1)[-1])


async def _stream(chunks: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The chunks, each made in a thread while the one before is being sent."""
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            yield chunk
    finally:
        # A thread cannot be stopped: let the chunk being made finish before the frame goes.
        await asyncio.wait([pending])


def _holds_binary(dtype: PolarsDataType) -> bool:
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_binary(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_binary(f.dtype) for f in dtype.fields)
    return dtype == pl.Binary


def _python_json(values: pl.Series) -> pl.Series:
    texts = [None if v is None else json.dumps(v, default=str) for v in values.to_list()]
    return pl.Series(values.name, texts, dtype=pl.String)


def _json_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A list or struct column as JSON text: encoded as a one-field struct, then unwrapped."""
    if _holds_binary(dtype):
        # polars cannot write bytes as JSON: these values go through Python's json, bytes as
        # their repr, as the earlier loader stored them.
        return pl.col(name).map_batches(_python_json, pl.String, is_elementwise=True)
    wrapped = pl.struct(name).struct.json_encode()  # {"name":<value>}
    inner = wrapped.str.slice(len(name) + 4).str.head(-1)
    return pl.when(pl.col(name).is_not_null()).then(inner).alias(name)


def _wire(frame: pl.LazyFrame) -> tuple[pl.LazyFrame, set[str]]:
    """The frame as pgpq encodes it to its columns' `pg_type`s; and which of them are jsonb."""
    casts, json_columns = [], set()
    for name, dtype in frame.collect_schema().items():
        if dtype.is_nested():
            json_columns.add(name)
            casts.append(_json_text(name, dtype))
        elif not isinstance(dtype, _ENCODABLE):
            casts.append(pl.col(name).cast(pl.String))  # pg_type's text
    return (frame.with_columns(casts) if casts else frame), json_columns


def _arrow_schema(frame: pl.LazyFrame, json_columns: set[str]) -> pa.Schema:
    fields = []
    for arrow_field in frame.head(0).collect().to_arrow().schema:
        if pa.types.is_time(arrow_field.type):
            # polars keeps times in nanoseconds, PostgreSQL and pgpq in microseconds
            arrow_field = arrow_field.with_type(pa.time64("us"))
        elif arrow_field.name in json_columns:
            arrow_field = arrow_field.with_type(pa.large_string())
        fields.append(arrow_field)
    return pa.schema(fields)


def _encoder(schema: pa.Schema, json_columns: set[str]) -> pgpq.ArrowToPostgresBinaryEncoder:
    builders: dict[str, Any] = {
        f.name: (
            encoders.LargeStringEncoderBuilder.new_with_output(f, pg_wire.Jsonb())
            if f.name in json_columns
            else pgpq.ArrowToPostgresBinaryEncoder.infer_encoder(f)
        )
        for f in schema
    }
    return pgpq.ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)


def _encoded(frame: pl.LazyFrame) -> Iterator[bytes]:
    """The frame in PostgreSQL's binary COPY format, one chunk of rows at a time (blocking)."""
    wire, json_columns = _wire(frame)
    schema = _arrow_schema(wire, json_columns)
    encoder = _encoder(schema, json_columns)
    yield encoder.write_header()
    for chunk in wire.collect_batches(chunk_size=_CHUNK_ROWS):
        for record_batch in chunk.to_arrow().to_batches():
            if record_batch.schema != schema:
                record_batch = record_batch.cast(schema, safe=False)
            yield encoder.write_batch(record_batch)
    yield encoder.finish()
