"""Where a transform reads and writes: staged files under DATA_ROOT only.

The converter's helpers for this live in its own package, and agents never import a sibling
(STYLE.md), so the few lines a transform needs are here, on agents/base alone. Inputs are
confined to DATA_ROOT (the staging area upstream steps write to), not to `allowed_roots`: a
transform works on what the platform staged, never on an arbitrary folder of the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from agents.base.actions import AgentError
from agents.base.security import confine_path
from agents.base.settings import AgentSettings
from agents.base.storage import DataRoot


@dataclass(frozen=True)
class StagedFile:
    ref: str  # as the caller named it
    fs: AbstractFileSystem
    path: str  # inside `fs`


def refused(field: str, message: str, *, code: str, status: int = 422) -> AgentError:
    """An AgentError naming the body field at fault, as validation errors do."""
    return AgentError(
        f"{field}: {message}",
        code=code,
        status_code=status,
        details=[{"field": field, "message": message}],
    )


def resolve_staged(ref: str, settings: AgentSettings, field: str) -> StagedFile:
    """`ref` if it is an existing file under DATA_ROOT (after `..` and symlinks are resolved)."""
    scope = settings.model_copy(update={"allowed_roots": [settings.data_root]})
    try:
        confined = confine_path(ref, scope)
    except AgentError as exc:
        raise refused(
            field, f"{ref!r} is outside the staging area (DATA_ROOT)", code="path_not_allowed"
        ) from exc
    try:
        exists = confined.fs.isfile(confined.path)
    except OSError as exc:  # storage briefly unreachable: another attempt may succeed
        raise AgentError(
            f"{field}: cannot reach {ref!r}: {exc}", code="storage_unavailable", retryable=True
        ) from exc
    if not exists:
        raise refused(field, f"staged file {ref!r} does not exist", code="input_not_found")
    return StagedFile(ref, confined.fs, confined.path)


def output_dir(root: DataRoot, run_id: str | None, step_id: str | None, seed: Any) -> str:
    """This attempt's folder, as the converter lays its own out (runs/<run>/<step>/<digest>/):
    the same for every retry of one step attempt, so a retry overwrites its own file."""
    text = seed if isinstance(seed, str) else json.dumps(seed, sort_keys=True, default=str)
    digest = hashlib.sha256(f"transform:{text}".encode()).hexdigest()[:16]
    return root.path("runs", run_id or "adhoc", step_id or "transform", digest)


@contextlib.contextmanager
def scratch_file(root: DataRoot, name: str) -> Iterator[str]:
    """A local path to write `name` to before it is published (beside DATA_ROOT when local, so
    the publishing rename stays on one disk)."""
    base = root.path(".scratch") if root.protocol in ("file", "local") else None
    if base:
        os.makedirs(base, exist_ok=True)
    folder = tempfile.mkdtemp(dir=base, prefix="transform-")
    try:
        yield os.path.join(folder, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(root: DataRoot, local_file: str, path: str) -> None:
    """Move a finished file to `path` in one step: readers never see a half-written one."""
    if root.protocol in ("file", "local"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(local_file, path)
    else:
        root.fs.put(local_file, path)
