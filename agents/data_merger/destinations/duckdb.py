"""Loading a batch into a table of a DuckDB database file, in one transaction.

DuckDB is embedded: the file is the destination and one process at a time may write it (a file
another process holds is `busy`, retryable). The batch enters as an Arrow table the connection
scans in place, never as Python rows. As in the PostgreSQL loader, an upsert is
`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE ... IS DISTINCT FROM`, so an unchanged row is
not rewritten, and the ledger table `_merger_loads` in the target schema holds each batch's
fingerprint and result in the same transaction, so a repeated batch is answered, not reapplied.

Counts: `inserted` rows (scd2: keys new to the table), `updated` rows whose values changed
(scd2: keys that got a new version), `unchanged` batch rows already there as they are,
`deleted` rows removed (scd2: current versions closed by a hard delete or by being absent),
`written` the rows the load's statements inserted, updated or deleted (an scd2 change counts
twice: the closed version and the new one). `version` counts the loads that changed the table
(its rows or its columns), read from the ledger; a load that changes nothing keeps it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from agents.base.actions import AgentError
from agents.base.tabular.schema import schema_names
from agents.data_merger.contracts import apply_contract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.identifiers import (
    LOADS_TABLE,
    LoadCounts,
    quote,
    refuse_strategy_mismatch,
)
from agents.data_merger.merging import IS_CURRENT, SCD2_COLUMNS, VALID_FROM, VALID_TO

# Names this connection gives the staged batch, the delete keys and the scd2 changes.
_BATCH, _DELETES_ARROW = "_merger_batch", "_merger_deletes_arrow"
_DELETES, _CHANGES = "_merger_deletes", "_merger_changes"
_IS_NEW = "__merger_is_new"
# A column whose batch values are all null has no type yet; it is stored as text (as PostgreSQL).
_UNTYPED = {'"NULL"': "VARCHAR", "NULL": "VARCHAR"}


@dataclass
class _Table:
    """The target table as it is now (exists False: not yet created)."""

    exists: bool = False
    types: dict[str, str] = field(default_factory=dict)  # column -> DuckDB type
    schema: dict[str, pl.DataType] | None = None  # the same columns as polars types
    primary_key: list[str] = field(default_factory=list)

    @property
    def scd2(self) -> bool:
        return all(c in self.types for c in SCD2_COLUMNS)


def load(
    request: LoadRequest,
    path: str,
    table: str,
    schema: str = "main",
    *,
    then: Callable[[duckdb.DuckDBPyConnection], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Apply the batch to `schema.table` in the DuckDB file `path` in one transaction.

    `then` makes more loads in the same transaction (`load_in`: the batch's child tables) and
    answers what goes under `child_tables` in the result.
    """
    if table.lower() == LOADS_TABLE:
        raise AgentError(
            f"{table!r} is the merger's own ledger; choose another", code="invalid_target"
        )
    # Bad identifiers are refused before the file is touched.
    quote(schema)
    quote(table)
    label = f"{schema}.{table}"
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with _duckdb_errors(path, label), _connection(path) as conn:
        conn.execute("BEGIN TRANSACTION")
        try:
            result = _apply(conn, request, path, schema, table)
            if then is not None:
                result = {**result, "child_tables": then(conn)}
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
    return result


def load_in(
    conn: duckdb.DuckDBPyConnection, request: LoadRequest, path: str, table: str, schema: str
) -> dict[str, Any]:
    """Another load inside the transaction `load` holds on `conn` (a child table's)."""
    if table.lower() == LOADS_TABLE:
        raise AgentError(
            f"{table!r} is the merger's own ledger; choose another", code="invalid_target"
        )
    quote(table)
    # The previous load's scratch tables: this one makes its own under the same names.
    conn.execute(f"DROP TABLE IF EXISTS temp.{_DELETES}")
    conn.execute(f"DROP TABLE IF EXISTS temp.{_CHANGES}")
    return _apply(conn, request, path, schema, table)


@contextmanager
def _duckdb_errors(path: str, label: str) -> Iterator[None]:
    """DuckDB's and polars' exceptions as the AgentErrors the engine understands."""
    try:
        yield
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise AgentError(
                f"the DuckDB file {path!r} is being written by another process; try again",
                code="busy",
                retryable=True,
            ) from exc
        raise AgentError(
            f"cannot use the DuckDB file {path!r}: {exc}", code="destination_error", retryable=True
        ) from exc
    except duckdb.TransactionException as exc:
        # Two connections of this process wrote the same rows; the later one lost the race.
        raise AgentError(
            f"another load wrote {label!r} at the same time: {exc}", code="busy", retryable=True
        ) from exc
    except duckdb.OutOfMemoryException as exc:
        raise AgentError(
            f"DuckDB ran out of memory loading {label!r}: {exc}",
            code="destination_error",
            retryable=True,
        ) from exc
    except (duckdb.Error, pl.exceptions.PolarsError) as exc:
        raise AgentError(f"cannot load into {label!r}: {exc}", code="load_failed") from exc


@contextmanager
def _connection(path: str) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(path)
    try:
        # TIMESTAMPTZ columns come back in the session's zone; UTC makes their type stable.
        conn.execute("SET SESSION TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    # The transaction may be gone already: DuckDB aborts it itself on some errors.
    with suppress(duckdb.Error):
        conn.execute("ROLLBACK")


def _apply(
    conn: duckdb.DuckDBPyConnection, request: LoadRequest, path: str, schema: str, table: str
) -> dict[str, Any]:
    spec = request.spec
    label = f"{schema}.{table}"
    target = f"{quote(schema)}.{quote(table)}"
    ledger = f"{quote(schema)}.{LOADS_TABLE}"
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {ledger} (target VARCHAR NOT NULL, fingerprint VARCHAR "
        "NOT NULL, result JSON NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, "
        "PRIMARY KEY (target, fingerprint))"
    )
    stored = _first_row(
        conn,
        f"SELECT result FROM {ledger} WHERE target = ? AND fingerprint = ?",
        [label, request.fingerprint],
    )
    if stored is not None:
        return {**json.loads(stored[0]), "replayed": True}

    before = _read_table(conn, schema, table)
    scd2 = spec.disposition == "merge" and spec.strategy == "scd2"
    _check_target(conn, ledger, label, before, request, scd2)
    batch = request.batch
    if spec.hard_delete and spec.hard_delete in batch.collect_schema().names():
        batch = batch.drop(spec.hard_delete)  # a control column, never data
    batch, report = apply_contract(
        batch,
        before.schema,
        request.contract,
        table=table,
        ignore=frozenset(SCD2_COLUMNS),
    )
    rows = _to_arrow(batch)
    _check_batch(rows, request, scd2)
    discarded = not before.exists and request.contract.tables in ("discard_row", "discard_value")
    if rows.num_columns:
        conn.register(_BATCH, rows)

    counts = LoadCounts()
    schema_changed = False
    # A table the contract discards is not created; an existing one is loaded even when empty.
    if before.exists or (rows.num_columns and not discarded):
        schema_changed = _prepare_table(conn, target, before, rows, request, scd2)
        types = _read_table(conn, schema, table).types
        counts = _write(conn, target, rows.column_names, types, request, scd2)

    after = _read_table(conn, schema, table)
    previous = _scalar(
        conn,
        f"SELECT coalesce(max(CAST(result->>'version' AS BIGINT)), 0) FROM {ledger} "
        "WHERE target = ?",
        [label],
    )
    changed = schema_changed or counts.written > 0
    result: dict[str, Any] = {
        "dataset": request.dataset,
        "target": "duckdb",
        "path": path,
        "table": label,
        "version": previous + 1 if changed else previous,
        "rows": _scalar(conn, f"SELECT count(*) FROM {target}") if after.exists else 0,
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "deleted": counts.deleted,
        "written": counts.written,
        "bytes": None,  # DuckDB does not say what a transaction added to the file
        "schema": schema_names(after.schema or {}),
        "primary_key": after.primary_key or list(spec.primary_key),
        "write_disposition": spec.disposition,
        "strategy": spec.strategy,
        "contract": report.as_dict(),
        "replayed": False,
    }
    conn.execute(
        f"INSERT INTO {ledger} (target, fingerprint, result, loaded_at) VALUES (?, ?, ?, ?)",
        [label, request.fingerprint, json.dumps(result), request.loaded_at],
    )
    return result


def _write(
    conn: duckdb.DuckDBPyConnection,
    target: str,
    columns: list[str],
    types: dict[str, str],
    request: LoadRequest,
    scd2: bool,
) -> LoadCounts:
    """Apply the registered batch to the (prepared) table as the disposition says."""
    spec = request.spec
    counts = LoadCounts()
    if spec.disposition == "append":
        counts.inserted = _insert(conn, target, columns)
    elif spec.disposition == "replace":
        counts.deleted = _scalar(conn, f"DELETE FROM {target}")
        counts.inserted = _insert(conn, target, columns)
    elif scd2:
        return _scd2(conn, target, columns, types, request, _deletes(conn, request, types))
    else:
        deletes = _deletes(conn, request, types)
        counts = _upsert(conn, target, columns, spec.primary_key, deletes)
    counts.written = counts.inserted + counts.updated + counts.deleted
    return counts


def _first_row(
    conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> tuple[Any, ...] | None:
    # fetchall, not fetchone: DuckDB keeps a result open until a fetch comes back empty, and
    # an open result makes the connection refuse `register`.
    rows = conn.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> int:
    """The single number a statement answers (a count, or the rows a DML statement changed)."""
    row = _first_row(conn, sql, params)
    return int(row[0]) if row and row[0] is not None else 0


def _readable(dtype: pa.DataType) -> pa.DataType:
    """`dtype` as polars can import it.

    DuckDB hands INTERVAL out as Arrow month_day_nano_interval, which polars cannot import (it
    panics), so it is read as the duration that polars writes INTERVAL columns from.
    """
    if pa.types.is_interval(dtype):
        return pa.duration("us")
    if pa.types.is_fixed_size_list(dtype):
        return pa.list_(_readable(dtype.value_type), dtype.list_size)
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return pa.list_(_readable(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct(
            [
                dtype.field(i).with_type(_readable(dtype.field(i).type))
                for i in range(dtype.num_fields)
            ]
        )
    if pa.types.is_map(dtype):
        return pa.map_(_readable(dtype.key_type), _readable(dtype.item_type))
    return dtype


def _read_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> _Table:
    where = (
        "database_name = current_database() AND lower(schema_name) = lower(?) "
        "AND lower(table_name) = lower(?)"
    )
    if _first_row(conn, f"SELECT 1 FROM duckdb_tables() WHERE {where}", [schema, table]):
        target = f"{quote(schema)}.{quote(table)}"
        types = {row[0]: row[1] for row in conn.execute(f"DESCRIBE {target}").fetchall()}
        empty = conn.sql(f"SELECT * FROM {target} LIMIT 0").to_arrow_table()
        readable = pa.schema([f.with_type(_readable(f.type)) for f in empty.schema])
        polars_schema = dict(pl.DataFrame(readable.empty_table()).schema)
        key = _first_row(
            conn,
            f"SELECT constraint_column_names FROM duckdb_constraints() WHERE {where} "
            "AND constraint_type = 'PRIMARY KEY'",
            [schema, table],
        )
        return _Table(True, types, polars_schema, list(key[0]) if key else [])
    return _Table()


def _check_target(
    conn: duckdb.DuckDBPyConnection,
    ledger: str,
    label: str,
    table: _Table,
    request: LoadRequest,
    scd2: bool,
) -> None:
    """Refuse a load the existing table cannot take as asked."""
    spec = request.spec
    if not table.exists:
        return
    refuse_strategy_mismatch(f"table {label!r}", table.scd2, scd2)
    if spec.disposition != "merge":
        return
    key = table.primary_key
    if scd2:
        # An scd2 table has several versions per key, so no constraint names it; its loads do.
        known = _first_row(
            conn,
            f"SELECT result->>'primary_key' FROM {ledger} WHERE target = ? "
            "AND result->>'strategy' = 'scd2' LIMIT 1",
            [label],
        )
        key = json.loads(known[0]) if known else list(spec.primary_key)
    if sorted(k.lower() for k in key) != sorted(k.lower() for k in spec.primary_key):
        raise AgentError(
            f"table {label!r} is keyed by {key}; merging by {spec.primary_key} is refused",
            code="primary_key_mismatch",
        )


def _to_arrow(frame: pl.LazyFrame) -> pa.Table:
    schema = frame.collect_schema()
    categorical = [c for c, t in schema.items() if isinstance(t, pl.Categorical | pl.Enum)]
    if categorical:
        # They would become DuckDB ENUMs, whose closed set of values a later batch could break.
        frame = frame.with_columns(pl.col(categorical).cast(pl.String))
    return frame.collect(engine="streaming").to_arrow()


def _check_batch(rows: pa.Table, request: LoadRequest, scd2: bool) -> None:
    spec = request.spec
    if spec.disposition != "merge":
        return
    missing = [k for k in spec.primary_key if k not in rows.column_names]
    if missing:
        raise AgentError(
            f"the batch has no column {', '.join(missing)} of the primary key",
            code="missing_column",
        )
    if scd2:
        managed = [c for c in SCD2_COLUMNS if c in rows.column_names]
        if managed:
            raise AgentError(
                f"the batch holds {', '.join(managed)}, which scd2 manages itself",
                code="load_failed",
            )
        # No constraint guards an scd2 key, and a null one would never match its versions.
        nulls = sum(rows.column(k).null_count for k in spec.primary_key)
        if nulls:
            raise AgentError(
                f"batch rows have {nulls} nulls in the primary key {', '.join(spec.primary_key)}",
                code="null_primary_key",
            )


def _prepare_table(
    conn: duckdb.DuckDBPyConnection,
    target: str,
    table: _Table,
    rows: pa.Table,
    request: LoadRequest,
    scd2: bool,
) -> bool:
    """Create the table or add the batch's new columns; whether its columns changed."""
    batch_types: dict[str, str] = {}
    if rows.num_columns:
        described = conn.execute(f"DESCRIBE SELECT * FROM {_BATCH}").fetchall()
        batch_types = {row[0]: _UNTYPED.get(row[1], row[1]) for row in described}
    if not table.exists:
        columns = [f"{quote(c)} {t}" for c, t in batch_types.items()]
        key = request.spec.primary_key
        if scd2:
            columns += [
                f"{VALID_FROM} TIMESTAMPTZ",
                f"{VALID_TO} TIMESTAMPTZ",
                f"{IS_CURRENT} BOOLEAN",
            ]
        elif key:
            columns.append(f"PRIMARY KEY ({', '.join(quote(c) for c in key)})")
        conn.execute(f"CREATE TABLE {target} ({', '.join(columns)})")
        return True
    added = [c for c in batch_types if c not in table.types]
    for column in added:
        conn.execute(f"ALTER TABLE {target} ADD COLUMN {quote(column)} {batch_types[column]}")
    return bool(added)


def _insert(conn: duckdb.DuckDBPyConnection, target: str, columns: list[str]) -> int:
    if not columns:
        return 0
    names = ", ".join(quote(c) for c in columns)
    return _scalar(conn, f"INSERT INTO {target} ({names}) SELECT {names} FROM {_BATCH}")


def _deletes(conn: duckdb.DuckDBPyConnection, request: LoadRequest, types: dict[str, str]) -> bool:
    """Stage the keys to delete as `_DELETES`, typed as the table's key; whether there are any."""
    if request.deletes is None:
        return False
    key = request.spec.primary_key
    keys = request.deletes.select(key).collect(engine="streaming")
    if not keys.height:
        return False
    conn.register(_DELETES_ARROW, keys.to_arrow())
    # The contract cast the batch, not the deletes: they take the key's type here.
    casts = ", ".join(f"CAST({quote(k)} AS {types[k]}) AS {quote(k)}" for k in key)
    conn.execute(f"CREATE TEMP TABLE {_DELETES} AS SELECT DISTINCT {casts} FROM {_DELETES_ARROW}")
    return True


def _match(key: list[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in key)


def _differs(columns: list[str], left: str, right: str) -> str:
    # Column by column, so a list or struct compares without building a row of mixed types.
    return " OR ".join(f"{left}.{quote(c)} IS DISTINCT FROM {right}.{quote(c)}" for c in columns)


def _upsert(
    conn: duckdb.DuckDBPyConnection,
    target: str,
    columns: list[str],
    key: list[str],
    deletes: bool,
) -> LoadCounts:
    counts = LoadCounts()
    batch_rows = _scalar(conn, f"SELECT count(*) FROM {_BATCH}")
    # DuckDB's RETURNING cannot tell an inserted row from an updated one, so the new keys are
    # counted first; the statement's own count is then inserted plus updated.
    counts.inserted = _scalar(
        conn,
        f"SELECT count(*) FROM {_BATCH} b WHERE NOT EXISTS "
        f"(SELECT 1 FROM {target} t WHERE {_match(key, 't', 'b')})",
    )
    values = [c for c in columns if c not in key]
    if values:
        sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in values)
        action = f"DO UPDATE SET {sets} WHERE {_differs(values, 't', 'EXCLUDED')}"
    else:
        action = "DO NOTHING"
    names = ", ".join(quote(c) for c in columns)
    changed = _scalar(
        conn,
        f"INSERT INTO {target} AS t ({names}) SELECT {names} FROM {_BATCH} "
        f"ON CONFLICT ({', '.join(quote(k) for k in key)}) {action}",
    )
    counts.updated = changed - counts.inserted
    counts.unchanged = batch_rows - changed
    if deletes:
        counts.deleted = _scalar(
            conn,
            f"DELETE FROM {target} AS t USING {_DELETES} d WHERE {_match(key, 't', 'd')}",
        )
    return counts


def _scd2(
    conn: duckdb.DuckDBPyConnection,
    target: str,
    columns: list[str],
    types: dict[str, str],
    request: LoadRequest,
    deletes: bool,
) -> LoadCounts:
    """Close the current versions of changed, deleted (and absent) keys; insert new versions."""
    spec = request.spec
    key = spec.primary_key
    at: datetime = request.loaded_at
    values = [c for c in columns if c not in key]
    # Columns the batch lacks keep the values of the version a new one supersedes.
    kept = [c for c in types if c not in columns and c not in SCD2_COLUMNS]
    changed = f"c.{quote(key[0])} IS NULL" + (f" OR {_differs(values, 'c', 'b')}" if values else "")
    carried = "".join(f", c.{quote(c)}" for c in kept)
    conn.execute(
        f"CREATE TEMP TABLE {_CHANGES} AS SELECT b.*{carried}, c.{quote(key[0])} IS NULL "
        f"AS {_IS_NEW} FROM {_BATCH} b LEFT JOIN (SELECT * FROM {target} WHERE {IS_CURRENT}) c "
        f"ON {_match(key, 'c', 'b')} WHERE {changed}"
    )
    counts = LoadCounts()
    counts.inserted = _scalar(conn, f"SELECT count(*) FROM {_CHANGES} WHERE {_IS_NEW}")
    counts.updated = _scalar(conn, f"SELECT count(*) FROM {_CHANGES} WHERE NOT {_IS_NEW}")
    counts.unchanged = _scalar(conn, f"SELECT count(*) FROM {_BATCH}") - counts.inserted
    counts.unchanged -= counts.updated
    close = f"UPDATE {target} AS t SET {VALID_TO} = ?, {IS_CURRENT} = false"
    closed = _scalar(
        conn,
        f"{close} FROM {_CHANGES} ch WHERE t.{IS_CURRENT} AND NOT ch.{_IS_NEW} "
        f"AND {_match(key, 't', 'ch')}",
        [at],
    )
    if deletes:
        counts.deleted = _scalar(
            conn,
            f"{close} FROM {_DELETES} d WHERE t.{IS_CURRENT} AND {_match(key, 't', 'd')}",
            [at],
        )
    if spec.retire_absent:
        counts.deleted += _scalar(
            conn,
            f"{close} WHERE t.{IS_CURRENT} AND NOT EXISTS "
            f"(SELECT 1 FROM {_BATCH} b WHERE {_match(key, 't', 'b')})",
            [at],
        )
    names = ", ".join(quote(c) for c in [*columns, *kept])
    added = _scalar(
        conn,
        f"INSERT INTO {target} ({names}, {VALID_FROM}, {VALID_TO}, {IS_CURRENT}) "
        f"SELECT {names}, ?, NULL, true FROM {_CHANGES}",
        [at],
    )
    counts.written = added + closed + counts.deleted
    return counts
