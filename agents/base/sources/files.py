"""File sources (local folders and object stores through fsspec): listing, probing, describing.

Everything here blocks (fsspec calls); callers run it in `asyncio.to_thread`.
"""

from __future__ import annotations

import posixpath
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.base.actions import AgentError
from agents.base.security import ConfinedPath, safe_glob
from agents.base.sources.heuristics import recommend_files

_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")


@dataclass(frozen=True)
class FileEntry:
    """One file found under a source: its path in the filesystem and relative to the source."""

    path: str
    relative: str
    size: int
    modified: float | None  # seconds since the epoch

    @property
    def modified_at(self) -> str | None:
        if self.modified is None:
            return None
        return datetime.fromtimestamp(self.modified, UTC).isoformat().replace("+00:00", "Z")


def modified_ts(info: dict[str, Any]) -> float | None:
    """The modification time in an fsspec info dict (the key differs per filesystem)."""
    for key in _MTIME_KEYS:
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def list_files(source: ConfinedPath, glob: str) -> list[FileEntry]:
    """The files under `source` matching `glob`, sorted by relative path.

    A match that resolves outside the allowed root (a symlink pointing out) is refused.
    """
    fs, base = source.fs, source.path.rstrip("/") or "/"
    if fs.isfile(base):
        info = fs.info(base)
        name = posixpath.basename(base)
        return [FileEntry(base, name, int(info.get("size") or 0), modified_ts(info))]
    pattern = posixpath.join(base, safe_glob(glob))
    found = fs.glob(pattern, detail=True)
    entries = []
    for path, info in found.items():
        if not source.inside(path):
            raise AgentError(
                f"{posixpath.relpath(path, base)!r} leads outside the allowed roots",
                code="path_not_allowed",
            )
        if info.get("islink") and source.local:
            # A link that stays inside the root is followed: describe its target.
            info = fs.info(str(Path(path).resolve()))
        if info.get("type") != "file":
            continue
        relative = posixpath.relpath(path, base)
        entries.append(FileEntry(path, relative, int(info.get("size") or 0), modified_ts(info)))
    return sorted(entries, key=lambda e: e.relative)


def test_files(source: ConfinedPath, url: str) -> dict[str, Any]:
    """Whether the folder exists and can be listed, how fast, and what it supports."""
    fs, path = source.fs, source.path
    started = time.perf_counter()
    try:
        exists = fs.exists(path)
        if not exists:
            return _missing(url, started)
        is_dir = fs.isdir(path)
        listing = fs.ls(path, detail=True) if is_dir else [fs.info(path)]
    except (OSError, PermissionError, ValueError) as exc:  # object-store errors are OSErrors
        return _missing(url, started, f"{type(exc).__name__}: {exc}")
    latency = (time.perf_counter() - started) * 1000.0
    files = [e for e in listing if e.get("type") == "file"]
    sizes = [int(e.get("size") or 0) for e in files]
    caps = ["list", "read", "glob"]
    if any(modified_ts(e) is not None for e in files):
        caps.append("modified_time")
    if not source.local:
        caps.append("object_store")
    mean = sum(sizes) / len(sizes) if sizes else None
    return {
        "reachable": True,
        "kind": "file",
        "url": url,
        "protocol": "file" if source.local else _protocol(source),
        "is_dir": is_dir,
        "entries": len(listing),
        "files": len(files),
        "bytes": sum(sizes),
        "latency_ms": round(latency, 3),
        "capabilities": caps,
        "recommended": recommend_files(latency, remote=not source.local, mean_file_bytes=mean),
    }


def describe_files(source: ConfinedPath, url: str, glob: str, limit: int) -> dict[str, Any]:
    """The files a collect with this glob would take: count, size, types, time range."""
    try:
        entries = list_files(source, glob)
    except FileNotFoundError:
        entries = []
    times = [e.modified for e in entries if e.modified is not None]
    extensions = Counter(posixpath.splitext(e.relative)[1].lstrip(".").lower() for e in entries)
    return {
        "reachable": source.fs.exists(source.path),
        "kind": "file",
        "url": url,
        "glob": glob,
        "count": len(entries),
        "bytes": sum(e.size for e in entries),
        "extensions": dict(sorted(extensions.items())),
        "oldest_modified_at": _iso(min(times)) if times else None,
        "newest_modified_at": _iso(max(times)) if times else None,
        "files": [
            {"path": e.relative, "bytes": e.size, "modified_at": e.modified_at}
            for e in entries[:limit]
        ],
        "truncated": len(entries) > limit,
    }


def _missing(url: str, started: float, reason: str = "not found") -> dict[str, Any]:
    return {
        "reachable": False,
        "kind": "file",
        "url": url,
        "reason": reason,
        "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
        "capabilities": [],
        "recommended": {"concurrency": 1, "batch_size": 1, "basis": "unreachable"},
    }


def _protocol(source: ConfinedPath) -> str:
    protocol = source.fs.protocol
    return protocol if isinstance(protocol, str) else protocol[0]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
