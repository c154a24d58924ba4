"""Polars and Arrow types as a Delta table stores them, and the primary key kept in its schema.

Apart from the load because these are conversions only (no commit): the types Delta has no
name for (`delta_compatible`), a table's schema as polars types, the key's field metadata
(`KEY_METADATA`), and a batch as the stream of Arrow record batches delta-rs writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

KEY_METADATA = "merger.primary_key"
_CHUNK_ROWS = 100_000
# Delta has no unsigned, 128-bit, half-float, time-of-day or interval types: the nearest type
# that holds every value (a Duration becomes its microseconds, a Time its ISO text).
_WIDER: dict[type[pl.DataType], pl.DataType] = {
    pl.UInt8: pl.Int16(),
    pl.UInt16: pl.Int32(),
    pl.UInt32: pl.Int64(),
    pl.UInt64: pl.Decimal(20, 0),
    pl.Int128: pl.Decimal(38, 0),
    pl.UInt128: pl.Decimal(38, 0),
    pl.Float16: pl.Float32(),
    pl.Time: pl.String(),
    pl.Duration: pl.Int64(),
    pl.Null: pl.String(),
}


def delta_compatible(batch: pl.LazyFrame, existing: dict[str, pl.DataType] | None) -> pl.LazyFrame:
    """`batch` with every column in a type Delta stores (see `_WIDER`).

    Categoricals and enums become strings, timestamps microseconds (UTC when zoned), unsigned
    integers the next signed type that holds them (UInt64 decimal(20,0)); an all-null
    (Null-typed) column takes the table's type for it, else string.
    """
    casts = []
    for column, dtype in batch.collect_schema().items():
        if isinstance(dtype, pl.Null):
            wanted = (existing or {}).get(column) or pl.String()
            casts.append(pl.col(column).cast(wanted))
            continue
        wanted = _storable(dtype)
        if wanted == dtype:
            continue
        if isinstance(dtype, pl.Time):
            # A cast to text drops the fraction of a second; the format keeps microseconds.
            casts.append(pl.col(column).dt.to_string("%H:%M:%S%.6f"))
        else:
            # Units first, so a Duration's integer is microseconds whatever its own unit.
            casts.append(pl.col(column).cast(_in_microseconds(dtype)).cast(wanted))
    return batch.with_columns(casts) if casts else batch


def _storable(dtype: pl.DataType) -> pl.DataType:
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", "UTC" if dtype.time_zone else None)
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_storable(_inner(dtype)))
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, _storable(_as_type(f.dtype))) for f in dtype.fields])
    return _WIDER.get(type(dtype), dtype)


def _in_microseconds(dtype: pl.DataType) -> pl.DataType:
    if isinstance(dtype, pl.Duration):
        return pl.Duration("us")
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", dtype.time_zone)
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_in_microseconds(_inner(dtype)))
    if isinstance(dtype, pl.Struct):
        fields = [pl.Field(f.name, _in_microseconds(_as_type(f.dtype))) for f in dtype.fields]
        return pl.Struct(fields)
    return dtype


def _inner(dtype: pl.List | pl.Array) -> pl.DataType:
    return _as_type(dtype.inner)


def _as_type(dtype: Any) -> pl.DataType:
    return dtype() if isinstance(dtype, type) else dtype


def polars_schema(table: DeltaTable) -> dict[str, pl.DataType]:
    empty = pa.schema(table.schema().to_arrow()).empty_table()
    return dict(pl.DataFrame(empty).schema)


def recorded_key(table: DeltaTable) -> list[str]:
    positions = {
        field.name: int(field.metadata[KEY_METADATA])
        for field in table.schema().fields
        if KEY_METADATA in (field.metadata or {})
    }
    return sorted(positions, key=lambda name: positions[name])


def with_key_metadata(schema: pa.Schema, key: list[str]) -> pa.Schema:
    fields = [
        field.with_metadata({KEY_METADATA: str(key.index(field.name))})
        if field.name in key
        else field
        for field in schema
    ]
    return pa.schema(fields)


def stream(batch: pl.LazyFrame, key: list[str]) -> pa.RecordBatchReader:
    """The batch as Arrow record batches, computed chunk by chunk (never all in memory)."""
    schema = pl.DataFrame(schema=batch.collect_schema()).to_arrow().schema
    if key:
        schema = with_key_metadata(schema, key)

    def batches() -> Iterator[pa.RecordBatch]:
        for chunk in batch.collect_batches(chunk_size=_CHUNK_ROWS, engine="streaming"):
            for record_batch in chunk.to_arrow().to_batches():
                yield record_batch.cast(schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
