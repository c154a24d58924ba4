"""A whole PostgreSQL schema as a source (dlt's `sql_database`): the plan of its tables.

`plan_tables` reads the catalog once and returns one item per table for the `sql_database`
workflow to fan out over (`map_over`): the single-table source to collect, the dataset it
loads into, its primary key (the table's PRIMARY KEY constraint unless a hint gives one), its
write disposition, its incremental cursor and where that cursor is kept
(`<state_key>.<table>`). Everything that would fail later fails here, before any row is read,
as a 422 naming the table: a merge of a table without a key, a cursor column a table lacks, a
listed table that does not exist, a table the role may not read (or, with `on_unreadable:
skip`, that table is listed under `skipped`, never left out silently).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import text

from agents.base.actions import ActionBody, AgentError
from agents.base.context import ActionContext
from agents.base.security import scrub
from agents.base.sources.models import PostgresSource, postgres_engine
from agents.base.sources.postgres import CONNECT_ERRORS, primary_keys, table_columns
from agents.data_collector.rest import Incremental
from agents.data_collector.state import STATE_KEY_PATTERN

Disposition = Literal["append", "replace", "merge"]
# The merger's dataset names (agents/data_merger/bodies.py MergeBody.dataset).
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class TableHints(ActionBody):
    """What one table needs besides the catalog (dlt's `apply_hints`)."""

    primary_key: list[str] | None = Field(
        None, min_length=1, description="key columns (default: the table's PRIMARY KEY)"
    )
    write_disposition: Disposition | None = Field(
        None, description="this table's disposition (default: the plan's write_disposition)"
    )
    incremental: Incremental | None = Field(
        None,
        description="this table's cursor; null (given) loads it whole every run; left out: the "
        "plan's incremental",
    )
    dataset: str | None = Field(
        None,
        pattern=_DATASET.pattern,
        description="the dataset to load into (default: dataset_prefix + table)",
    )


class PlanTablesBody(ActionBody):
    """Which tables of a schema to load, and how."""

    source: PostgresSource = Field(
        description="{kind: postgres, url | url_env, db_schema, tables?}: every table of "
        "db_schema, or the listed ones"
    )
    dataset_prefix: str = Field(
        "", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,63})?$", description="dataset = prefix + table"
    )
    write_disposition: Disposition = Field("merge", description="append, replace or merge")
    incremental: Incremental | None = Field(
        None, description="the cursor of every table without its own hint (a column each has)"
    )
    hints: dict[str, TableHints] = Field(
        default_factory=dict, description="per-table primary_key, write_disposition, incremental"
    )
    state_key: str | None = Field(
        None,
        pattern=STATE_KEY_PATTERN,
        description="table T's cursor is kept under <state_key>.<T>; null keeps none",
    )
    on_unreadable: Literal["fail", "skip"] = Field(
        "fail",
        description="a table the role may not SELECT: fail the plan naming it, or list it "
        "under skipped",
    )
    destination: dict[str, Any] = Field(
        default_factory=dict, description="the merge destination (checked: no single table)"
    )


async def _catalog(
    source: PostgresSource, ctx: ActionContext
) -> tuple[str, dict[str, bool], dict[str, list[str]], dict[str, list[str]]]:
    """(schema, {table: readable}, {table: columns}, {table: primary key}) of the source."""
    secrets: list[str] = []
    try:
        async with (
            postgres_engine(source, ctx.settings) as (engine, secrets),
            engine.connect() as conn,
        ):
            schema = (
                source.db_schema
                or (await conn.execute(text("SELECT current_schema()"))).scalar_one()
            )
            rows = await conn.execute(
                text(
                    "SELECT c.relname, has_table_privilege(c.oid, 'SELECT') "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') "
                    "AND NOT c.relispartition ORDER BY c.relname"
                ),
                {"schema": schema},
            )
            readable = {r[0]: bool(r[1]) for r in rows}
            columns = await table_columns(conn, schema=schema, table=None)
            keys = await primary_keys(conn, schema=schema, table=None)
    except CONNECT_ERRORS as exc:
        raise AgentError(
            scrub(f"database error: {type(exc).__name__}: {exc}", secrets),
            code="source_unavailable",
            retryable=True,
        ) from exc
    return (
        schema,
        readable,
        {t: [c.name for c in cols] for (_, t), cols in columns.items()},
        {t: key for (_, t), key in keys.items()},
    )


def _refuse(message: str, code: str = "invalid_table") -> AgentError:
    return AgentError(message, code=code)


async def plan_tables(body: PlanTablesBody, ctx: ActionContext) -> dict[str, Any]:
    """The tables to load, one item each, for a `map_over`; refusals name the table.

    Returns `{schema, tables: [{table, source, dataset, primary_key, primary_key_from,
    write_disposition, incremental, state_key}], skipped: [{table, reason}], count}`.
    """
    source = body.source
    if source.table is not None or source.query is not None:
        raise _refuse(
            "a whole-schema source takes db_schema and optionally tables, not table or query",
            "invalid_source",
        )
    if body.destination.get("table") is not None:
        raise _refuse(
            "destination.table would load every table into one; leave it out (each table "
            "loads into its own dataset, table = dataset)",
            "invalid_destination",
        )
    schema, readable, columns, keys = await _catalog(source, ctx)
    wanted = list(source.tables) if source.tables is not None else list(readable)
    missing = [t for t in wanted if t not in readable]
    if missing:
        raise _refuse(f"table {schema}.{missing[0]} not found", "table_not_found")
    if not wanted:
        raise _refuse(f"schema {schema!r} has no tables to load", "table_not_found")
    stray = sorted(set(body.hints) - set(wanted))
    if stray:
        raise _refuse(f"hints: table {stray[0]!r} is not one of the tables loaded")
    items: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for table in wanted:
        if not readable[table]:
            reason = f"permission denied: the role may not SELECT from {schema}.{table}"
            if body.on_unreadable == "fail":
                raise _refuse(reason, "read_refused")
            skipped.append({"table": table, "reason": reason})
            continue
        items.append(_item(body, schema, table, columns.get(table, []), keys.get(table, [])))
    return {"schema": schema, "tables": items, "skipped": skipped, "count": len(items)}


def _item(
    body: PlanTablesBody, schema: str, table: str, names: list[str], catalog_key: list[str]
) -> dict[str, Any]:
    hints = body.hints.get(table, TableHints())
    label = f"{schema}.{table}"
    key = hints.primary_key or catalog_key
    unknown = [k for k in key if k not in names]
    if unknown:
        raise _refuse(f"table {label}: primary_key column {unknown[0]!r} not found")
    disposition = hints.write_disposition or body.write_disposition
    if disposition == "merge" and not key:
        raise _refuse(
            f"table {label} has no primary key, so it cannot be merged: give it one "
            f"(hints: {{{table}: {{primary_key: [...]}}}}) or load it with write_disposition "
            "append or replace (hints: {table: {write_disposition: append}})",
            "no_primary_key",
        )
    incremental = hints.incremental if "incremental" in hints.model_fields_set else body.incremental
    if incremental is not None:
        if incremental.field not in names:
            raise _refuse(
                f"table {label} has no cursor column {incremental.field!r}: give it its own "
                f"(hints: {{{table}: {{incremental: {{field: ...}}}}}}) or none "
                "(incremental: null)",
                "unknown_column",
            )
        if incremental.key is None and key:
            # The boundary dedup identifies a row by the key the merge uses.
            incremental = incremental.model_copy(update={"key": key})
    dataset = hints.dataset or f"{body.dataset_prefix}{table}"
    if not _DATASET.fullmatch(dataset):
        raise _refuse(
            f"table {label}: {dataset!r} is not a dataset name (letters, digits, _ . -); give "
            "one in hints: {table: {dataset: ...}}"
        )
    state_key = f"{body.state_key}.{table}" if body.state_key is not None else None
    if state_key is not None and not re.fullmatch(STATE_KEY_PATTERN, state_key):
        raise _refuse(f"table {label}: {state_key!r} cannot be a state key")
    one = body.source.model_dump(mode="json", exclude={"tables"}, exclude_none=True)
    return {
        "table": table,
        "source": {**one, "db_schema": schema, "table": table},
        "dataset": dataset,
        "primary_key": key,
        "primary_key_from": "hints" if hints.primary_key else ("catalog" if key else None),
        "write_disposition": disposition,
        "incremental": incremental.model_dump(mode="json") if incremental else None,
        "state_key": state_key,
    }
