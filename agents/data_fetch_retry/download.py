"""One download attempt into a partial file that the next attempt resumes with `Range`.

The partial file `<name>.part` sits in the step's run dir (deterministic, so even a retry of
the whole step by the engine resumes it); `<name>.part.json` remembers the validator (ETag or
Last-Modified) sent as `If-Range`, so a changed file restarts from zero instead of splicing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from agents.base.actions import AgentError
from agents.base.context import ActionContext
from agents.base.http_retry import TransientError, check_status
from agents.base.security import AppliedAuth, guarded_stream, redact_url

_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")


@dataclass
class Partial:
    """The partial download of one file: its data file and its metadata sidecar."""

    path: Path

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def validator(self, url: str) -> str | None:
        """The ETag or Last-Modified of the partial data, if it came from `url`."""
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("url") != url:
            return None
        return meta.get("etag") or meta.get("last_modified")

    def remember(self, url: str, response: httpx.Response) -> None:
        meta = {
            "url": url,
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
        }
        self.meta_path.write_text(json.dumps(meta))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


@dataclass
class Completed:
    """A finished download (still under its .part name)."""

    bytes: int
    sha256: str
    status_code: int
    content_type: str | None
    resumed_from: int
    final_url: str
    etag: str | None
    last_modified: str | None


def _hash_existing(path: Path) -> Any:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest


def _write(handle: BinaryIO, digest: Any, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


def too_large(size: int, limit: int) -> AgentError:
    """The (non-retryable) error for a file over `max_bytes`."""
    return AgentError(
        f"the file is larger than max_bytes ({size} > {limit})",
        code="too_large",
        details={"max_bytes": limit},
    )


async def attempt_download(
    client: httpx.AsyncClient,
    ctx: ActionContext,
    *,
    url: str,
    partial: Partial,
    headers: dict[str, str],
    auth: AppliedAuth,
    timeout_s: float,
    max_bytes: int | None,
    resume: bool,
) -> Completed:
    """Download (or resume) `url` into `partial`; raise Transient/PermanentError on failure."""
    offset = await asyncio.to_thread(partial.size) if resume else 0
    if not resume:
        await asyncio.to_thread(partial.discard)
    request_headers = {"Accept-Encoding": "identity", **headers}
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
        if validator := await asyncio.to_thread(partial.validator, url):
            request_headers["If-Range"] = validator
    async with guarded_stream(
        client,
        url,
        ctx.settings,
        headers=request_headers,
        auth_headers=auth.headers,
        auth_params=auth.params,
        timeout_s=timeout_s,
    ) as response:
        status = response.status_code
        shown = redact_url(response.url, auth.secrets)
        if status == 416 and offset:
            match = _UNSATISFIED.match(response.headers.get("content-range", ""))
            if match and int(match.group(1)) == offset:
                return await _complete_as_is(partial, shown, response, offset)
            await asyncio.to_thread(partial.discard)
            raise TransientError(f"{shown} refused to resume; restarting", status_code=416)
        check_status(response, shown)
        start = 0
        if status == 206:
            match = _RANGE.match(response.headers.get("content-range", ""))
            if not match or int(match.group(1)) != offset:
                await asyncio.to_thread(partial.discard)
                raise TransientError(f"{shown} resumed at the wrong offset; restarting")
            start = offset
        length = response.headers.get("content-length")
        expected = start + int(length) if length and length.isdigit() else None
        if max_bytes is not None and expected is not None and expected > max_bytes:
            await asyncio.to_thread(partial.discard)
            raise too_large(expected, max_bytes)
        await asyncio.to_thread(partial.remember, url, response)
        digest = (
            await asyncio.to_thread(_hash_existing, partial.path) if start else hashlib.sha256()
        )
        size = start
        handle = await asyncio.to_thread(partial.path.open, "ab" if start else "wb")
        try:
            # No re-chunking: a buffered tail would be lost when the connection drops.
            async for chunk in response.aiter_raw():
                if max_bytes is not None and size + len(chunk) > max_bytes:
                    size += len(chunk)
                    break
                await asyncio.to_thread(_write, handle, digest, chunk)
                size += len(chunk)
        finally:
            await asyncio.to_thread(handle.close)
        if max_bytes is not None and size > max_bytes:
            await asyncio.to_thread(partial.discard)
            raise too_large(size, max_bytes)
        return Completed(
            bytes=size,
            sha256=digest.hexdigest(),
            status_code=status,
            content_type=response.headers.get("content-type"),
            resumed_from=start,
            final_url=shown,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )


async def _complete_as_is(
    partial: Partial, shown: str, response: httpx.Response, size: int
) -> Completed:
    """The partial file already holds the whole resource (the server says so with 416)."""
    digest = await asyncio.to_thread(_hash_existing, partial.path)
    return Completed(
        bytes=size,
        sha256=digest.hexdigest(),
        status_code=200,
        content_type=None,
        resumed_from=size,
        final_url=shown,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
    )


def finish(partial: Partial, final: Path) -> None:
    """Give the completed partial file its final name (blocking)."""
    os.replace(partial.path, final)
    partial.meta_path.unlink(missing_ok=True)
