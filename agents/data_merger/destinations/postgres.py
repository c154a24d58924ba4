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

This module holds the load and its SQL; `pg_schema` what the catalog says of the table and the
type mapping both ways, `pg_copy` the binary COPY, `pg_ledger` the `_merger_loads` ledger.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.base.actions import AgentError
from agents.base.tabular.schema import schema_names
from agents.data_merger.contracts import ContractReport, apply_contract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.identifiers import (
    LOADS_TABLE,
    LoadCounts,
    quote,
    refuse_strategy_mismatch,
)
from agents.data_merger.destinations.pg_copy import copy, copy_temp
from agents.data_merger.destinations.pg_ledger import (
    ensure_ledger,
    ledger_state,
    ledger_version,
    previous_rows,
)
from agents.data_merger.destinations.pg_schema import (
    Table,
    Target,
    check_castable,
    check_types,
    normalised,
    pg_type,
    polars_type,
    read_table,
    unique_keys,
)
from agents.data_merger.merging import IS_CURRENT, SCD2_COLUMNS, VALID_FROM, VALID_TO

_BATCH, _DELETES, _CHANGES = "_merger_batch", "_merger_deletes", "_merger_changes"


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
    target = Target(schema, table)
    label = target.label
    ledger = f"{quote(schema)}.{LOADS_TABLE}"
    await ensure_ledger(conn, schema)
    stored = await conn.execute(
        text(f"SELECT result FROM {ledger} WHERE target = :t AND fingerprint = :f"),
        {"t": label, "f": request.fingerprint},
    )
    if (replayed := stored.scalar()) is not None:
        return {**replayed, "replayed": True}

    before = await read_table(conn, target)
    scd2 = spec.disposition == "merge" and spec.strategy == "scd2"
    await _check_target(conn, target, before, request, scd2)
    batch, report = _prepared(request, before, target, scd2)
    columns = batch.collect_schema()
    for column in columns:
        quote(column)
    discarded = not before.exists and request.contract.tables in ("discard_row", "discard_value")

    counts = LoadCounts()
    rows = 0
    changed_columns = False
    if before.exists or (columns and not discarded):
        state = await ledger_state(conn, ledger, label)
        if not before.exists:
            counts = await _create_and_fill(conn, target, batch, request, scd2)
            rows = counts.inserted
            changed_columns = True
        else:
            exact = check_types(before, columns, label)
            changed_columns = await _add_columns(conn, target, before, columns)
            rows_before = await previous_rows(conn, target, state)
            counts = await _apply(conn, target, before, batch, request, scd2, exact)
            rows = rows_before + counts.inserted - counts.deleted
            if scd2:  # closed versions stay; every change adds one
                rows = rows_before + counts.inserted + counts.updated
            if spec.disposition == "replace":
                rows = counts.inserted
        version = ledger_version(state) + (1 if changed_columns or counts.written else 0)
    else:
        version = ledger_version(await ledger_state(conn, ledger, label))

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


async def _check_target(
    conn: AsyncConnection, target: Target, before: Table, request: LoadRequest, scd2: bool
) -> None:
    """Refuse a load the existing table cannot take as asked."""
    spec = request.spec
    label = target.label
    if spec.disposition == "merge" and not spec.primary_key:
        raise AgentError("write_disposition 'merge' needs a primary_key", code="invalid_target")
    if not before.exists:
        return
    refuse_strategy_mismatch(f"table {label!r}", before.scd2, scd2)
    if spec.disposition != "merge":
        return
    # scd2's key is its partial unique index (one current version per key); upsert's a full one.
    if (scd2, frozenset(spec.primary_key)) not in await unique_keys(conn, target):
        raise AgentError(
            f"table {label!r} has no unique constraint on ({', '.join(spec.primary_key)})"
            + (" WHERE _is_current" if scd2 else "")
            + ", which merge needs",
            code="invalid_target",
        )


def _prepared(
    request: LoadRequest, before: Table, target: Target, scd2: bool
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
    batch = normalised(batch, before)
    existing: dict[str, pl.DataType] | None = None
    if before.exists:
        batch_types = batch.collect_schema()
        existing = {}
        for column, column_type in before.types.items():
            mapped = polars_type(column_type)
            dtype = batch_types.get(column)
            if mapped is not None and dtype is not None:
                check_castable(batch, column, dtype, mapped, column_type, target.label)
            # A type with no polars name is left as the batch has it and compared in SQL terms.
            existing[column] = mapped or dtype or pl.String()
    return apply_contract(
        batch,
        existing,
        request.contract,
        table=target.table,
        ignore=frozenset(SCD2_COLUMNS),
    )


async def _add_columns(
    conn: AsyncConnection, target: Target, before: Table, columns: pl.Schema
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
    conn: AsyncConnection, target: Target, batch: pl.LazyFrame, request: LoadRequest, scd2: bool
) -> LoadCounts:
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
    copied = await copy(conn, batch, target.table, target.schema)
    names = ", ".join(quote(c) for c in key)
    if scd2:
        await conn.execute(text(f"CREATE UNIQUE INDEX ON {target.sql} ({names}, {VALID_FROM})"))
        await conn.execute(
            text(f"CREATE UNIQUE INDEX ON {target.sql} ({names}) WHERE {IS_CURRENT}")
        )
    elif key:
        await conn.execute(text(f"ALTER TABLE {target.sql} ADD PRIMARY KEY ({names})"))
    return LoadCounts(inserted=copied, written=copied)


async def _apply(
    conn: AsyncConnection,
    target: Target,
    before: Table,
    batch: pl.LazyFrame,
    request: LoadRequest,
    scd2: bool,
    exact: bool,
) -> LoadCounts:
    """Apply the batch to the existing table with the request's disposition."""
    spec = request.spec
    columns = batch.collect_schema().names()
    counts = LoadCounts()
    if spec.disposition == "replace":
        counts.deleted = await _count(conn, f"DELETE FROM {target.sql}")
    if spec.disposition in ("replace", "append"):
        # A batch with no columns holds no rows: nothing to insert.
        if columns and exact:
            counts.inserted = await copy(conn, batch, target.table, target.schema)
        elif columns:
            await copy_temp(conn, _BATCH, batch)
            names = ", ".join(quote(c) for c in columns)
            insert = f"INSERT INTO {target.sql} ({names}) SELECT {names} FROM {_BATCH}"
            counts.inserted = await _count(conn, insert)
        counts.written = counts.inserted + counts.deleted
        return counts
    batch_rows = await copy_temp(conn, _BATCH, batch)
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
    if not await copy_temp(conn, _DELETES, keys):
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
    target: Target,
    columns: list[str],
    batch_rows: int,
    key: list[str],
    deletes: bool,
) -> LoadCounts:
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
    counts = LoadCounts(inserted=inserted, updated=updated)
    counts.unchanged = batch_rows - inserted - updated
    if deletes:
        counts.deleted = await _count(
            conn, f"DELETE FROM {target.sql} AS t USING {_DELETES} d WHERE {_match(key, 't', 'd')}"
        )
    counts.written = counts.inserted + counts.updated + counts.deleted
    return counts


async def _scd2(
    conn: AsyncConnection,
    target: Target,
    before: Table,
    columns: list[str],
    batch_rows: int,
    request: LoadRequest,
    deletes: bool,
) -> LoadCounts:
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
    counts = LoadCounts()
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


async def drop_scratch(conn: AsyncConnection) -> None:
    """Drop the temporary tables a load made, so that another load can follow it in the same
    transaction (they are dropped at commit otherwise)."""
    await conn.execute(
        text(f"DROP TABLE IF EXISTS pg_temp.{_BATCH}, pg_temp.{_DELETES}, pg_temp.{_CHANGES}")
    )
