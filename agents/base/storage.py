"""Staged data under DATA_ROOT (a local folder or any fsspec URL such as s3://bucket/prefix).

Agents pass data between steps by reference: they write files here and return manifests
(URI, rows, bytes, sha256, schema), never the rows themselves.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from agents.base.actions import AgentError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataRoot:
    """A place to stage data; `uri(*parts)` names a file under it."""

    fs: AbstractFileSystem
    base: str  # path inside `fs`, without protocol
    protocol: str

    @classmethod
    def from_setting(cls, data_root: str) -> DataRoot:
        """Open the DATA_ROOT setting; a plain path is a local folder (made absolute)."""
        if "://" not in data_root:
            data_root = str(Path(data_root).resolve())
        fs, path = fsspec.core.url_to_fs(data_root)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        return cls(fs=fs, base=path.rstrip("/"), protocol=protocol)

    def path(self, *parts: str) -> str:
        """A path inside the root; refuses parts that would climb out of it."""
        joined = posixpath.normpath(posixpath.join(self.base, *parts))
        if joined != self.base and not joined.startswith(self.base + "/"):
            raise AgentError(f"path {'/'.join(parts)!r} escapes DATA_ROOT", code="path_escape")
        return joined

    def uri(self, path: str) -> str:
        """The URI other steps use to read `path`."""
        return path if self.protocol in ("file", "local") else f"{self.protocol}://{path}"

    def run_dir(self, run_id: str | None, step_id: str | None) -> str:
        """The folder for one step's outputs (deterministic, so a retry overwrites its own)."""
        return self.path("runs", run_id or "adhoc", step_id or "step")


def sha256_of(uri: str) -> tuple[str, int]:
    """The sha256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with fsspec.open(uri, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def file_manifest(
    uri: str, *, rows: int | None = None, schema: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """The manifest of one staged file: what downstream steps and users rely on."""
    digest, size = sha256_of(uri)
    manifest: dict[str, Any] = {"uri": uri, "bytes": size, "sha256": digest}
    if rows is not None:
        manifest["rows"] = rows
    if schema is not None:
        manifest["schema"] = schema
    manifest.update(extra)
    return manifest
