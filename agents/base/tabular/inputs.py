"""File references in action bodies: flattening manifests, confining reads, staging locally.

Upstream steps pass their outputs straight in through templates, so a file reference may be a
URI string, a manifest object `{"uri": ...}`, a step output `{"files": [...]}` or nested lists
of these. Reads are confined to DATA_ROOT and the agent's `allowed_roots`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import fsspec
from pydantic import BeforeValidator

from agents.base.actions import AgentError
from agents.base.security import confine_path
from agents.base.settings import AgentSettings
from agents.base.storage import DataRoot

if TYPE_CHECKING:
    from agents.base.context import ActionContext

_REMOTE_FETCH = ("http", "https", "ftp", "sftp")


def flatten_refs(value: Any) -> list[str]:
    """Every file URI inside `value`: strings, `{"uri"}` manifests, `{"files"}` outputs, lists."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        # A step output listing files wins over its own `uri` (a merge names its folder there).
        if isinstance(value.get("files"), list):
            return flatten_refs(value["files"])
        if isinstance(value.get("uri"), str):
            return [value["uri"]]
        raise ValueError("a file reference object needs a 'uri' (a manifest) or 'files'")
    if isinstance(value, list | tuple):
        return [uri for item in value for uri in flatten_refs(item)]
    raise ValueError(f"a file reference must be a URI string, a manifest or a list, not {value!r}")


def _flatten_one(value: Any) -> str:
    refs = flatten_refs(value)
    if len(refs) != 1:
        raise ValueError(f"expected exactly one file reference, got {len(refs)}")
    return refs[0]


# Body field types: validation flattens first, then checks the result is a (list of) string.
FileRefs = Annotated[list[str], BeforeValidator(flatten_refs)]
FileRef = Annotated[str, BeforeValidator(_flatten_one)]


def _protocol(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def resolve_input(ref: str, settings: AgentSettings) -> str:
    """The readable location of `ref` (a local path or an fsspec URL) if it is inside a root.

    The roots are DATA_ROOT (where upstream steps stage their outputs) and the agent's
    `allowed_roots`; `..` and symlinks are resolved first (agents.base.security).
    """
    if not ref.strip():
        raise AgentError("empty file reference", code="invalid_input")
    if _protocol(ref) in _REMOTE_FETCH:
        raise AgentError(
            f"{ref!r} is a remote address; fetch it into DATA_ROOT with data-collector first",
            code="unsupported_uri",
        )
    scope = settings.model_copy(
        update={"allowed_roots": [settings.data_root, *settings.allowed_roots]}
    )
    confined = confine_path(ref, scope)
    try:
        exists = confined.fs.isfile(confined.path)
    except OSError as exc:  # storage briefly unreachable: another attempt may succeed
        raise AgentError(
            f"cannot reach {ref!r}: {exc}", code="storage_unavailable", retryable=True
        ) from exc
    if not exists:
        raise AgentError(f"input file {ref!r} does not exist", code="input_not_found")
    return confined.path if confined.local else str(confined.fs.unstrip_protocol(confined.path))


def is_local(location: str) -> bool:
    """Whether `location` (as returned by resolve_input or DataRoot.path) is a local path."""
    return "://" not in location


@contextlib.contextmanager
def local_copy(location: str, workdir: str) -> Iterator[str]:
    """A local path holding `location`'s bytes (the file itself when it is already local)."""
    if is_local(location):
        yield location
        return
    target = os.path.join(workdir, f"in-{uuid.uuid4().hex}{Path(location).suffix}")
    try:
        fsspec.core.url_to_fs(location)[0].get(location.split("://", 1)[1], target)
        yield target
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(target)


def publish(root: DataRoot, local_file: str, path: str) -> None:
    """Move a finished local file to `path` under DATA_ROOT in one step (rename or upload).

    Readers never see a half-written `path`: a crash before this leaves only scratch files.
    """
    if root.protocol in ("file", "local"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(local_file, path)
    else:
        root.fs.put(local_file, path)


@contextlib.contextmanager
def scratch_dir(root: DataRoot) -> Iterator[str]:
    """A temporary local folder (beside DATA_ROOT when local, so renames stay on one disk)."""
    base = root.path(".scratch") if root.protocol in ("file", "local") else None
    if base:
        os.makedirs(base, exist_ok=True)
    path = tempfile.mkdtemp(dir=base, prefix="work-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def step_output_dir(root: DataRoot, ctx: ActionContext, action: str, request: Any) -> str:
    """This attempt's output folder: the same for every retry of the same step attempt.

    The folder is keyed by run and step, and inside by the Idempotency-Key (which tells map
    children apart) or, without one, by the request itself.
    """
    seed = ctx.idempotency_key or json.dumps(request, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{action}:{seed}".encode()).hexdigest()[:16]
    return root.path("runs", ctx.run_id or "adhoc", ctx.step_id or action, digest)
