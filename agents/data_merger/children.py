"""Child tables of unnested batches (convert's `nested: "unnest"`), loaded next to the parent.

A root batch file written by unnesting names its child tables' files in its Parquet metadata
(agents.base.tabular.unnest). The merge loads each child table `<path>` into the destination
beside the parent, as dataset `<dataset>__<path>` (Delta) or table `<table>__<path>`
(PostgreSQL, DuckDB), with the parent's write disposition:
- append / replace: the child rows of the batch are appended / become the child table;
- merge: child rows are keyed by their `_row_id`; every child row whose `_root_id` is one of
  the batch's root rows (hard-deleted ones included) and that the batch does not hold again is
  deleted, so a re-merged record's children are exactly the new ones (a delete by `_root_id`
  and an insert, in the same commit as the child table's upsert). Merging needs root ids
  derived from the merge's primary key (convert with `primary_key`), else a changed record
  would get a new id and its old children would stay.
Child rows of hard-deleted parents are not loaded. PostgreSQL loads the parent and every child
in one transaction; Delta commits each table on its own (each exactly once by its own
fingerprint), so a failure between them is completed by the retry; DuckDB loads them all in
one transaction, as PostgreSQL. The earlier Parquet format takes no child tables: a batch with
children is refused there (422), as is an scd2 merge of one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.base.actions import AgentError
from agents.base.settings import AgentSettings
from agents.base.storage import DataRoot
from agents.base.tabular.inputs import is_local, local_copy, resolve_input
from agents.base.tabular.unnest import ROOT_ID, ROW_ID, SEPARATOR, unnest_metadata
from agents.data_merger import dataset
from agents.data_merger.destinations import LoadRequest, delta, postgres
from agents.data_merger.destinations import duckdb as duckdb_file
from agents.data_merger.destinations.identifiers import quote
from agents.data_merger.destinations.pg_copy import copy_temp
from agents.data_merger.merging import MergeSpec

_ROOTS = "_merger_roots"
# Destinations that take child tables.
TAKES_CHILDREN = ("delta", "postgres", "duckdb")


@dataclass
class Children:
    """The child tables a batch brings: each one's files, and how the root ids were made."""

    row_id: str
    primary_key: list[str]
    parents: list[str] = field(default_factory=list)  # root files with children
    tables: dict[str, list[str]] = field(default_factory=dict)  # path -> child file locations

    def files(self) -> list[str]:
        """Every child file, table by table."""
        return [f for path in sorted(self.tables) for f in self.tables[path]]


def _schema(location: str) -> pa.Schema | None:
    try:
        with fsspec.open(location, "rb") as handle:
            return pq.read_schema(handle)
    except (pa.ArrowException, OSError):
        return None  # not a Parquet file (a CSV batch, say): no children


def find_children(
    refs: list[str], locations: list[str], settings: AgentSettings
) -> Children | None:
    """The child tables named by the batch files' metadata; None when there are none."""
    found: Children | None = None
    for ref, location in zip(refs, locations, strict=True):
        schema = _schema(location)
        meta = unnest_metadata(schema) if schema is not None else None
        if meta is None or not meta.get("children"):
            continue
        if found is None:
            found = Children(row_id=meta["row_id"], primary_key=list(meta["primary_key"]))
        elif (found.row_id, found.primary_key) != (meta["row_id"], meta["primary_key"]):
            raise AgentError(
                "the batch files were unnested with different row ids (primary_key "
                f"{found.primary_key} and {meta['primary_key']}); convert them alike",
                code="invalid_input",
            )
        found.parents.append(location)
        for path, name in meta["children"].items():
            child = posixpath.join(posixpath.dirname(ref), name)
            found.tables.setdefault(path, []).append(resolve_input(child, settings))
    return found


def refuse(children: Children | None, kind: str, spec: MergeSpec, name: str) -> None:
    """Refuse, before anything is written, a load that cannot keep the child tables."""
    if children is None:
        return
    paths = ", ".join(sorted(children.tables))
    if kind not in TAKES_CHILDREN:
        raise AgentError(
            f"the batch holds child tables ({paths}; convert's nested: unnest) and a {kind} "
            "destination cannot take them: load into delta or postgres, or convert with "
            "nested: keep",
            code="unsupported_destination",
        )
    if spec.disposition == "merge" and spec.strategy == "scd2":
        raise AgentError(
            f"the batch holds child tables ({paths}); scd2 keeps no child tables",
            code="unsupported_destination",
        )
    if spec.disposition == "merge" and (
        children.row_id != "primary_key" or sorted(children.primary_key) != sorted(spec.primary_key)
    ):
        raise AgentError(
            f"merging child tables ({paths}) needs root ids derived from the merge's primary "
            f"key {spec.primary_key}: convert with nested: unnest and primary_key "
            f"{spec.primary_key} (the batch's ids come from "
            + (f"{children.primary_key})" if children.primary_key else "row content)"),
            code="row_id_not_keyed",
        )
    for path in children.tables:
        child_name(name, path)


def child_name(name: str, path: str) -> str:
    """The child table's dataset (or table) name, checked as a dataset name."""
    child = f"{name}{SEPARATOR}{path}"
    if not dataset.NAME.match(child):
        raise AgentError(
            f"child table name {child!r} is not a valid dataset name (at most 128 letters, "
            "digits, '_', '-', '.'); lower max_nesting or rename the fields",
            code="invalid_dataset",
        )
    return child


def _scan(locations: list[str], workdir: str, label: str) -> pl.LazyFrame:
    frames = []
    for index, location in enumerate(locations):
        path = location
        if not is_local(location):
            path = os.path.join(workdir, f"{label}-{index}.parquet")
            with local_copy(location, workdir) as copied:
                os.replace(copied, path)
        frames.append(pl.scan_parquet(path))
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


@dataclass
class _Child:
    """One child table's part of a load: its rows and, for a merge, the roots it replaces."""

    path: str
    request: LoadRequest
    roots: pl.LazyFrame  # every root id of the batch (a merge deletes their other children)


def _requests(parent: LoadRequest, children: Children) -> list[_Child]:
    spec = parent.spec
    merge = spec.disposition == "merge"
    kept = parent.batch.select(pl.col(ROW_ID).alias(ROOT_ID)).unique()
    roots = _scan(children.parents, parent.workdir, "parent").select(pl.col(ROW_ID).alias(ROOT_ID))
    out: list[_Child] = []
    for path, files in sorted(children.tables.items()):
        rows = _scan(files, parent.workdir, f"child-{len(out)}").join(kept, on=ROOT_ID, how="semi")
        if merge:
            ids, total = rows.select(pl.col(ROW_ID).n_unique(), pl.len()).collect().row(0)
            if ids != total:
                raise AgentError(
                    f"child table {path!r} has {total - ids} rows whose _row_id repeats: the "
                    "batch holds a primary key twice; merge one record per key",
                    code="duplicate_key",
                )
        child_spec = MergeSpec(spec.disposition, [ROW_ID] if merge else [], None, True, None)
        digest = hashlib.sha256(f"{parent.fingerprint}:{path}".encode()).hexdigest()
        request = replace(
            parent,
            dataset=child_name(parent.dataset, path),
            batch=rows,
            deletes=None,
            spec=child_spec,
            fingerprint=digest,
        )
        out.append(_Child(path, request, roots.unique()))
    return out


def _stale(child: _Child, existing: pl.LazyFrame) -> pl.LazyFrame:
    """The child rows of the batch's roots that the batch does not hold again."""
    return (
        existing.select(ROW_ID, ROOT_ID)
        .join(child.roots, on=ROOT_ID, how="semi")
        .join(child.request.batch.select(ROW_ID), on=ROW_ID, how="anti")
        .select(ROW_ID)
    )


def load_delta(
    request: LoadRequest,
    root: DataRoot,
    uri: str,
    storage_options: dict[str, str] | None,
    children: Children | None,
) -> dict[str, Any]:
    """The parent's Delta load, then each child table's (dataset `<dataset>__<path>`)."""
    # The child rows are checked before the parent commits (a refused batch writes nothing).
    parts = _requests(request, children) if children is not None else []
    result = delta.load(request, uri, storage_options)
    if children is None:
        return result
    tables = {}
    for child in parts:
        child_uri = root.uri(dataset.dataset_dir(root, child.request.dataset))
        child_request = child.request
        if child_request.spec.disposition == "merge" and DeltaTable.is_deltatable(
            child_uri, storage_options=storage_options
        ):
            existing = pl.scan_delta(child_uri, storage_options=storage_options)
            child_request = replace(child_request, deletes=_stale(child, existing))
        tables[child.path] = {
            "uri": child_uri,
            **delta.load(child_request, child_uri, storage_options),
        }
    return {**result, "child_tables": tables}


async def _existing_pg(
    conn: AsyncConnection, child: _Child, table: str, schema: str
) -> pl.LazyFrame | None:
    target = f"{quote(schema)}.{quote(table)}"
    found = await conn.execute(text("SELECT to_regclass(:t)"), {"t": target})
    if found.scalar() is None:
        return None
    await copy_temp(conn, _ROOTS, child.roots)
    rows = await conn.execute(
        text(
            f"SELECT c.{quote(ROW_ID)}, c.{quote(ROOT_ID)} FROM {target} c "
            f"JOIN {_ROOTS} r ON c.{quote(ROOT_ID)} = r.{quote(ROOT_ID)}"
        )
    )
    await conn.execute(text(f"DROP TABLE {_ROOTS}"))
    return pl.DataFrame(
        rows.fetchall(), schema={ROW_ID: pl.String, ROOT_ID: pl.String}, orient="row"
    ).lazy()


async def load_postgres(
    conn: AsyncConnection,
    request: LoadRequest,
    children: Children | None,
    *,
    table: str,
    schema: str,
) -> dict[str, Any]:
    """The parent's load, then each child table's `<table>__<path>`, in the caller's
    transaction: all of them or none."""
    if children is None:
        return await postgres.load(conn, request, table=table, schema=schema)
    parts = await asyncio.to_thread(_requests, request, children)
    result = await postgres.load(conn, request, table=table, schema=schema)
    tables = {}
    for child in parts:
        child_table = f"{table}{SEPARATOR}{child.path}"
        quote(child_table)  # a name PostgreSQL cannot hold is refused, with the transaction
        await postgres.drop_scratch(conn)
        child_request = child.request
        if child_request.spec.disposition == "merge":
            existing = await _existing_pg(conn, child, child_table, schema)
            if existing is not None:
                child_request = replace(child_request, deletes=_stale(child, existing))
        tables[child.path] = await postgres.load(
            conn, child_request, table=child_table, schema=schema
        )
    return {**result, "child_tables": tables}


def _existing_duckdb(
    conn: duckdb.DuckDBPyConnection, child: _Child, table: str, schema: str
) -> pl.LazyFrame | None:
    found = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    if not found[0][0]:
        return None
    conn.register(_ROOTS, child.roots.collect().to_arrow())
    try:
        existing = pl.from_arrow(
            conn.sql(
                f"SELECT c.{quote(ROW_ID)}, c.{quote(ROOT_ID)} FROM "
                f"{quote(schema)}.{quote(table)} c "
                f"SEMI JOIN {_ROOTS} r ON c.{quote(ROOT_ID)} = r.{quote(ROOT_ID)}"
            ).to_arrow_table()
        )
    finally:
        conn.unregister(_ROOTS)
    assert isinstance(existing, pl.DataFrame)
    return existing.lazy()


def load_duckdb(
    request: LoadRequest, path: str, table: str, schema: str, children: Children | None
) -> dict[str, Any]:
    """The parent's load and each child table's `<table>__<path>`, in one DuckDB
    transaction."""
    if children is None:
        return duckdb_file.load(request, path, table, schema)
    parts = _requests(request, children)

    def load_children(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        tables = {}
        for child in parts:
            child_table = f"{table}{SEPARATOR}{child.path}"
            quote(child_table)
            child_request = child.request
            if child_request.spec.disposition == "merge":
                existing = _existing_duckdb(conn, child, child_table, schema)
                if existing is not None:
                    child_request = replace(child_request, deletes=_stale(child, existing))
            tables[child.path] = duckdb_file.load_in(conn, child_request, path, child_table, schema)
        return tables

    return duckdb_file.load(request, path, table, schema, then=load_children)
