"""What PostgreSQL says of a target table, and how its column types map to polars and back.

Apart from the load, whose SQL needs only the answers: the table's columns and unique keys
(from pg_catalog), `pg_type` (polars to PostgreSQL) and `polars_type` (the reverse), a batch's
types as PostgreSQL stores them, and the refusal of a column the table's type cannot take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.base.actions import AgentError
from agents.data_merger.destinations.identifiers import quote
from agents.data_merger.merging import SCD2_COLUMNS

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


@dataclass(frozen=True)
class Target:
    schema: str
    table: str

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.table)}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass
class Table:
    """The target table as it is before the load (no columns: it does not exist)."""

    types: dict[str, str] = field(default_factory=dict)  # column -> format_type
    exists: bool = False

    @property
    def scd2(self) -> bool:
        return all(c in self.types for c in SCD2_COLUMNS)


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


async def read_table(conn: AsyncConnection, target: Target) -> Table:
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
    return Table(types, bool(types))


async def unique_keys(conn: AsyncConnection, target: Target) -> list[tuple[bool, frozenset[str]]]:
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


def normalised(batch: pl.LazyFrame, before: Table) -> pl.LazyFrame:
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


def _type_change(column: str, table_type: str, dtype: pl.DataType, label: str) -> AgentError:
    return AgentError(
        f"column {column!r} of table {label!r} is {table_type}; the batch holds {dtype} "
        f"({pg_type(dtype)}), and a column's type is never changed",
        code="schema_type_change",
        details={"column": column, "table_type": table_type, "batch_type": str(dtype)},
    )


def check_castable(
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


def check_types(before: Table, columns: pl.Schema, label: str) -> bool:
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
