"""Parquet datasets under DATA_ROOT/datasets/<name>/, committed atomically.

Layout: `data/vNNNNNN-*.parquet` (immutable data files), `_versions/vNNNNNN.json` (the state of
each version) and `_current.json` (the state of the current version). A commit writes its data
file and version file first and then replaces `_current.json` in one step (a rename on local
disk, a single PUT on object storage): readers of `_current.json` (or of the `files` a merge
returns) see the old version or the new one, never a mix. Data files the new version no longer
references are then deleted, so that reading the `data/` folder as a whole (pyarrow, DuckDB)
also gives the current rows, apart from the moment of a commit. A commit whose pointer swap
never happened leaves a file that its retry overwrites (paths are deterministic). Writers to
one dataset are serialised by a PostgreSQL advisory lock, so merger replicas can share the work.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents.base.actions import AgentError
from agents.base.storage import DataRoot

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
CURRENT = "_current.json"
KEEP_COMMITS = 100


def dataset_dir(root: DataRoot, name: str) -> str:
    """The folder of dataset `name` (the name is checked: no separators, no dot-dot)."""
    if not NAME.match(name) or ".." in name:
        raise AgentError(
            f"invalid dataset name {name!r}: letters, digits, '_', '-' and '.' only",
            code="invalid_dataset",
        )
    return root.path("datasets", name)


def _read_json(root: DataRoot, path: str) -> dict[str, Any] | None:
    try:
        with root.fs.open(path, "rb") as handle:
            data: dict[str, Any] = json.loads(handle.read())
            return data
    except FileNotFoundError:
        return None


def _write_json(root: DataRoot, path: str, data: dict[str, Any]) -> None:
    payload = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
    if root.protocol in ("file", "local"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
    else:
        root.fs.pipe_file(path, payload)


def load_state(root: DataRoot, name: str) -> dict[str, Any] | None:
    """The current state of the dataset, or None if it has never been committed."""
    return _read_json(root, posixpath.join(dataset_dir(root, name), CURRENT))


def file_paths(root: DataRoot, name: str, state: dict[str, Any]) -> list[str]:
    """Absolute paths (inside the root's filesystem) of the current version's data files."""
    base = dataset_dir(root, name)
    return [posixpath.join(base, f["path"]) for f in state["files"]]


def scan(root: DataRoot, name: str, state: dict[str, Any]) -> pl.LazyFrame | None:
    """The rows of the current version, lazily (None for a dataset without files)."""
    paths = [root.uri(p) for p in file_paths(root, name, state)]
    if not paths:
        return None
    frames = [pl.scan_parquet(p) for p in paths]
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def data_file_path(root: DataRoot, name: str, version: int, tag: str) -> str:
    """The deterministic path of the data file a commit of `version` writes."""
    return posixpath.join(dataset_dir(root, name), "data", f"v{version:06d}-{tag}.parquet")


def commit(root: DataRoot, name: str, state: dict[str, Any]) -> None:
    """Record `state` as the new current version (version file first, then the pointer)."""
    base = dataset_dir(root, name)
    state["committed_at"] = datetime.now(UTC).isoformat()
    state["commits"] = state.get("commits", [])[-KEEP_COMMITS:]
    _write_json(root, posixpath.join(base, "_versions", f"v{state['version']:06d}.json"), state)
    _write_json(root, posixpath.join(base, CURRENT), state)


def prune(root: DataRoot, name: str, state: dict[str, Any]) -> list[str]:
    """Delete data files that the current version does not reference; their paths."""
    folder = posixpath.join(dataset_dir(root, name), "data")
    keep = set(file_paths(root, name, state))
    try:
        present = root.fs.ls(folder, detail=False)
    except FileNotFoundError:
        return []
    stale = [p for p in present if posixpath.normpath(p) not in keep]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            root.fs.rm_file(path)
    return stale


def find_commit(state: dict[str, Any] | None, fingerprint: str) -> dict[str, Any] | None:
    """The stored result of an earlier commit of the same batch, if there was one."""
    for entry in (state or {}).get("commits", []):
        if entry["fingerprint"] == fingerprint:
            result: dict[str, Any] = entry["result"]
            return result
    return None


@contextlib.asynccontextmanager
async def locked(engine: AsyncEngine, resource: str) -> AsyncIterator[AsyncConnection]:
    """Hold a transaction-scoped PostgreSQL advisory lock on `resource` for the block.

    The lock goes with the transaction, so a merger that dies mid-merge releases it.
    """
    async with engine.connect() as conn, conn.begin():
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:resource, 0))"),
            {"resource": f"data-merger:{resource}"},
        )
        yield conn
