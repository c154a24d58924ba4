"""Collecting from file sources: copy every new matching file into the run dir."""

from __future__ import annotations

import asyncio
import posixpath
from typing import Any

from agents.base.actions import AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.security import confine_path
from agents.base.sources.files import FileEntry, list_files
from agents.base.sources.models import FileSource
from agents.base.storage import DataRoot
from agents.data_collector import staging
from agents.data_collector.cursor import CursorState, IncrementalWindow


async def collect_files(
    source: FileSource,
    ctx: ActionContext,
    *,
    previous: CursorState | None,
    by: str,
    lag: float,
    concurrency: int,
    max_files: int | None,
) -> dict[str, Any]:
    """Copy the files matching the glob (those new since `previous`) and return manifests.

    `by` is "mtime" (a file modified since is taken again) or "name" (names after the last).
    """
    confined = confine_path(source.url, ctx.settings)
    if not await asyncio.to_thread(confined.fs.exists, confined.path):
        raise AgentError(f"source {source.url!r} does not exist", code="source_not_found")
    entries = await asyncio.to_thread(list_files, confined, source.glob)
    if by == "mtime":
        # Oldest first, so a capped run leaves a cursor the next run continues from.
        entries.sort(key=lambda e: (e.modified or 0.0, e.relative))
    window = IncrementalWindow(previous, field=by, lag=lag)
    chosen: list[FileEntry] = []
    for entry in entries:
        if max_files is not None and len(chosen) >= max_files:
            break
        value = entry.modified if by == "mtime" else entry.relative
        if window.consider(entry.relative, value):
            chosen.append(entry)
    root = DataRoot.from_setting(ctx.settings.data_root)
    out = staging.collect_dir(root, ctx)
    await asyncio.to_thread(staging.reset_dir, root, out)
    gate = asyncio.Semaphore(concurrency)

    async def copy(entry: FileEntry) -> dict[str, Any]:
        async with gate:
            dest = root.path(posixpath.relpath(out, root.base), entry.relative)
            manifest = await asyncio.to_thread(
                staging.copy_into, confined.fs, entry.path, root, dest
            )
        source_path = entry.path if confined.local else confined.fs.unstrip_protocol(entry.path)
        return {
            **manifest,
            "name": entry.relative,
            "source_path": source_path,
            "modified_at": entry.modified_at,
        }

    manifests = await asyncio.gather(*(copy(e) for e in chosen))
    manifests.sort(key=lambda m: m["name"])
    capped = max_files is not None and len(chosen) >= max_files
    return {
        "kind": "file",
        "files": manifests,
        "count": len(manifests),
        "bytes": sum(m["bytes"] for m in manifests),
        "matched": len(entries),
        "skipped": len(entries) - len(chosen),
        # Files announce no count; a full batch of max_files may leave more for the next run.
        **Completeness(
            read=len(manifests),
            outcome="partial" if capped else "complete",
            cap=f"max_files={max_files}" if capped else None,
        ).fields(),
        "cursor": window.state(),
    }
