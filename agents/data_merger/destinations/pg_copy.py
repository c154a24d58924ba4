"""Binary COPY of a polars frame into PostgreSQL, encoded by `pgpq` chunk by chunk.

Apart from the load because it is the one path that talks to the driver (asyncpg) itself, not
through SQLAlchemy, and the only code that knows the wire format: lists and structs as jsonb
text, times in microseconds, the next chunk encoded in a thread while the current one is sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
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
from agents.data_merger.destinations.identifiers import quote
from agents.data_merger.destinations.pg_schema import pg_type

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

# Rows per COPY chunk: about 6 MB on the wire for six scalar columns.
_CHUNK_ROWS = 100_000
# Types pgpq encodes as the PostgreSQL type `pg_type` names for them.
_ENCODABLE = (
    pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64,
    pl.Float32, pl.Float64, pl.Boolean, pl.String, pl.Binary, pl.Date, pl.Time,
    pl.Datetime, pl.Duration, pl.Decimal,
)  # fmt: skip


async def copy_temp(conn: AsyncConnection, table: str, frame: pl.LazyFrame) -> int:
    """COPY the frame into a new temporary table `table` (dropped at commit); its rows."""
    definitions = ", ".join(f"{quote(c)} {pg_type(t)}" for c, t in frame.collect_schema().items())
    await conn.execute(text(f"CREATE TEMP TABLE {table} ({definitions}) ON COMMIT DROP"))
    return await copy(conn, frame, table)


async def copy(
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
