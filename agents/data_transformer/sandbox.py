"""Running a user's SQL in DuckDB with no way out of its inputs.

The inputs are opened here, by pyarrow, and handed to DuckDB as registered Arrow datasets
(scanned lazily, batch by batch). The connection is created with external access disabled and
its configuration locked, so the SQL itself can open no file, URL, database or extension
(`read_csv('/etc/passwd')`, `COPY ... TO`, `ATTACH`, `INSTALL` are refused by DuckDB), cannot
turn that back on (`SET` is refused once locked), and cannot see Python variables (replacement
scans off). Only one statement, a query, is run. The result streams into a Parquet file that
the caller publishes; nothing is published when a limit is hit.

Everything here blocks (DuckDB, pyarrow, file IO) and runs in a worker thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pyarrow.fs import FSSpecHandler, PyFileSystem

from agents.base.actions import AgentError
from agents.data_transformer.staging import StagedFile, refused

BATCH_ROWS = 64 * 1024


@dataclass(frozen=True)
class Limits:
    max_rows: int
    memory_limit: str
    threads: int
    timeout_s: float


@dataclass
class Outcome:
    rows: int
    schema: dict[str, str]
    inputs: dict[str, dict[str, Any]]


def type_name(dtype: pa.DataType) -> str:
    """The portable name of an Arrow type, as the converter names polars types in its schemas."""
    if pa.types.is_timestamp(dtype):
        zone = f", {dtype.tz}" if dtype.tz else ""
        return f"timestamp[{dtype.unit}{zone}]"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_time(dtype):
        return "time"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "binary"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"list[{type_name(dtype.value_type)}]"
    if pa.types.is_struct(dtype):
        inner = ", ".join(f"{f.name}: {type_name(f.type)}" for f in dtype)
        return f"struct<{inner}>"
    return str(dtype)


def open_input(name: str, files: list[StagedFile]) -> ds.Dataset:
    """One lazy dataset over an input's files, their schemas unified (a column one file lacks
    reads as null there); a file that is not Parquet, or types that conflict, name the input."""
    field = f"inputs.{name}"
    schemas = []
    for staged in files:
        try:
            with staged.fs.open(staged.path, "rb") as handle:
                schemas.append(pq.read_schema(handle))
        except (pa.ArrowException, OSError) as exc:
            raise refused(
                field, f"{staged.ref!r} is not a readable Parquet file: {exc}", code="bad_input"
            ) from exc
    try:
        schema = pa.unify_schemas(schemas)
    except pa.ArrowException as exc:
        raise refused(field, f"its files' schemas conflict: {exc}", code="bad_input") from exc
    fs = files[0].fs
    filesystem = None if isinstance(fs, LocalFileSystem) else PyFileSystem(FSSpecHandler(fs))
    return ds.dataset(
        [f.path for f in files], schema=schema, format="parquet", filesystem=filesystem
    )


def _sandbox(limits: Limits) -> duckdb.DuckDBPyConnection:
    # Set at connect, before any user text is parsed: no moment exists in which they are off.
    return duckdb.connect(
        ":memory:",
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            "memory_limit": limits.memory_limit,
            "threads": limits.threads,
            "lock_configuration": True,
        },
    )


def _one_query(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise refused("sql", str(exc), code="sql_error") from exc
    if len(statements) != 1:
        raise refused(
            "sql", f"give exactly one statement, not {len(statements)}", code="sql_not_a_query"
        )
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        raise refused(
            "sql", f"only a query (SELECT, WITH, FROM) may run, not {kind}", code="sql_not_a_query"
        )
    return sql


def _sql_error(exc: BaseException, limits: Limits) -> AgentError:
    # DuckDB's own exception before the first row; past it, the Arrow stream carries DuckDB's
    # message in an OSError, so the kind is read from the message's prefix as well.
    message = str(exc)
    if isinstance(exc, duckdb.InterruptException) or message.startswith("INTERRUPT"):
        return refused("sql", f"the query ran past {limits.timeout_s:g} s", code="sql_timeout")
    if isinstance(exc, duckdb.OutOfMemoryException) or message.startswith("Out of Memory"):
        return refused(
            "sql",
            f"the query needs more than {limits.memory_limit} of memory: {message}",
            code="sql_out_of_memory",
            status=413,
        )
    if isinstance(exc, duckdb.PermissionException) or message.startswith("Permission Error"):
        return refused(
            "sql", f"{message} (a transform reads its inputs only)", code="sql_forbidden"
        )
    return refused("sql", message, code="sql_error")


def run(
    sql: str,
    inputs: dict[str, list[StagedFile]],
    target: str,
    *,
    limits: Limits,
    compression: str,
) -> Outcome:
    """Run `sql` over `inputs` (one view each, by name) and write its result to `target`."""
    datasets = {name: open_input(name, files) for name, files in inputs.items()}
    con = _sandbox(limits)
    # A timer rather than a statement_timeout: DuckDB interrupts a running query from outside.
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    try:
        for name, dataset in datasets.items():
            con.register(name, dataset)
        query = _one_query(con, sql)
        timer.start()
        try:
            reader = con.sql(query).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise _sql_error(exc, limits) from exc
        rows = _write(reader, target, limits=limits, compression=compression)
        return Outcome(
            rows=rows,
            schema={f.name: type_name(f.type) for f in reader.schema},
            inputs={
                name: {"files": len(inputs[name]), "rows": dataset.count_rows()}
                for name, dataset in datasets.items()
            },
        )
    finally:
        timer.cancel()
        con.close()


def _write(reader: pa.RecordBatchReader, target: str, *, limits: Limits, compression: str) -> int:
    names = reader.schema.names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise refused(
            "sql", f"the result names columns {twice} more than once; alias them", code="sql_error"
        )
    try:
        writer = pq.ParquetWriter(target, reader.schema, compression=compression)
    except pa.ArrowException as exc:
        # A DuckDB type Parquet cannot hold (an INTERVAL, a UNION): the query must cast it.
        raise refused(
            "sql", f"the result cannot be written as Parquet: {exc}", code="unwritable_result"
        ) from exc
    rows = 0
    with writer:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return rows
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                raise _sql_error(exc, limits) from exc
            rows += batch.num_rows
            if rows > limits.max_rows:
                raise refused(
                    "sql",
                    f"the result has more than {limits.max_rows} rows (AGENT_TRANSFORM_MAX_ROWS)",
                    code="too_many_rows",
                    status=413,
                )
            writer.write_batch(batch)
