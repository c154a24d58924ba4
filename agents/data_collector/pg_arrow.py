"""Reading a PostgreSQL query straight into Arrow record batches (ADBC's libpq driver).

The driver streams a `COPY ... (FORMAT binary)` into Arrow batches in C: no Python object per
row. Two traps shape this module:

- A query with bind parameters makes the driver materialise the whole result in one batch
  (measured: 1M rows, 501 MB vs 200 MB). So the incremental lower bound is bound once into a
  session setting (`set_config($1)`, a bound parameter, never SQL text) and the streaming
  query reads it back with `current_setting(...)`, which has no parameters.
- The connection must reach the address the SSRF check passed: libpq's `hostaddr` is that
  address while `host` keeps the name (TLS verify-full checks it, as before).

Everything here blocks; callers step through `batches()` in `asyncio.to_thread`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import URL

from agents.base.actions import AgentError
from agents.base.security import PgTarget

LOWER_BOUND_SETTING = "ingest_collector.lower_bound"
# The SQL type a bound lower bound is cast back to, by cursor column kind (a fixed list, so
# no catalog text is ever spliced into SQL).
BOUND_CASTS = {
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "date": "date",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "real": "real",
    "double precision": "double precision",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "uuid": "uuid",
}


def _quote_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_query(url: URL) -> None:
    """Only `ssl` means the same to asyncpg (the catalog) and libpq (the rows): refuse others."""
    extra = sorted(k for k in url.query if k != "ssl")
    if extra:
        raise AgentError(
            f"source.url: query option {extra[0]!r} is not supported (only ssl)",
            code="invalid_source",
        )


def conninfo(url: URL, target: PgTarget, *, timeout_s: float) -> str:
    """A libpq connection string pinned to `target.address` (`host` keeps the checked name)."""
    parts: dict[str, str] = {
        "host": target.host,
        "hostaddr": target.address,
        "port": str(target.port),
        "connect_timeout": str(max(2, math.ceil(timeout_s))),
    }
    if url.database:
        parts["dbname"] = url.database
    if url.username:
        parts["user"] = url.username
    if url.password:
        parts["password"] = str(url.password)
    check_query(url)
    ssl = url.query.get("ssl")
    if ssl:
        parts["sslmode"] = ssl if isinstance(ssl, str) else ssl[-1]
    return " ".join(f"{k}={_quote_value(v)}" for k, v in parts.items())


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def select_expr(name: str, data_type: str) -> str:
    """How a column is selected so that its Arrow form casts to `arrow_type` losslessly."""
    col = ident(name)
    if data_type == "interval":
        # asyncpg's timedelta had no months either; epoch counts a month as 30 days.
        return f"(extract(epoch FROM {col}) * 1000000)::bigint AS {col}"
    if data_type == "ARRAY":
        return f"to_json({col})::text AS {col}"
    if data_type in _NATIVE:
        return col
    return f"{col}::text AS {col}"


_NATIVE = {
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "boolean",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "bytea",
    "numeric",
    "text",
    "character varying",
    "character",
}


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The driver's batch in the collector's declared types (numeric arrives as text)."""
    arrays = []
    for index, field in enumerate(schema):
        column = batch.column(index)
        if isinstance(column, pa.ExtensionArray):
            column = column.storage
        if column.type != field.type:
            if pa.types.is_duration(field.type) and pa.types.is_integer(column.type):
                column = column.cast(pa.int64()).view(field.type)
            else:
                column = pc.cast(column, field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class ArrowQuery:
    """One streaming query on its own connection; close() ends it early if needed."""

    def __init__(self, dsn: str, sql: str, schema: pa.Schema, settings: dict[str, str]) -> None:
        """`settings` (the lower bound, a query's parameters) are set as session settings with
        bound values before `sql`, which reads them with `current_setting`."""
        self._conn = adbc.connect(dsn)
        self._cursor = self._conn.cursor()
        self.schema = schema
        # A collect never writes to its source, whatever the query or the source's functions.
        self._cursor.execute("SET TRANSACTION READ ONLY")
        for name, value in settings.items():
            self._cursor.execute("SELECT set_config($1, $2, false)", parameters=(name, value))
            self._cursor.fetchall()
        self._cursor.execute(sql)
        self._reader: Any = self._cursor.fetch_record_batch()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Arrow batches as the driver sizes them, already in the declared schema."""
        for batch in self._reader:
            if batch.num_rows:
                yield conform(batch, self.schema)

    def close(self) -> None:
        try:
            self._cursor.close()
        finally:
            self._conn.close()


DbError = adbc.Error  # every driver error: connection, SQL, protocol

# SQLSTATE classes a retry can cure: connection exceptions, insufficient resources, operator
# intervention (shutdown, cancel), serialization failures and deadlocks. Anything else (a
# value that does not compute, a write in the READ ONLY read, a missing privilege) fails the
# same way every time.
_TRANSIENT_CLASSES = ("08", "53", "57", "40")


def is_transient(exc: adbc.Error) -> bool:
    """Whether a driver error may pass on retry (no SQLSTATE: it never reached a server)."""
    sqlstate = getattr(exc, "sqlstate", None)
    return not sqlstate or str(sqlstate).startswith(_TRANSIENT_CLASSES)


def is_server_error(exc: pa.ArrowInvalid) -> bool:
    """Whether an error raised while streaming batches came from the server, not a cast here.
    The driver reports mid-stream failures as ArrowInvalid with libpq's text and no SQLSTATE."""
    return "[libpq]" in str(exc)


def connection_lost(exc: pa.ArrowInvalid) -> bool:
    """Whether a mid-stream server error is the connection going away (libpq's wording, the
    only signal the driver gives there), which a retry can cure."""
    message = str(exc).lower()
    return any(
        phrase in message
        for phrase in ("server closed the connection", "terminating connection", "connection to")
    )
