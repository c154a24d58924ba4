"""The fetch-retry action: download one URL with retries, a circuit breaker and a rate limit."""

from __future__ import annotations

import asyncio
import hashlib
import math
import posixpath
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import httpx
import pybreaker
import stamina
from aiolimiter import AsyncLimiter
from pydantic import Field, field_validator

from agents.base.actions import ActionBody, ActionRegistry, ActionResult, AgentError
from agents.base.context import ActionContext
from agents.base.http_retry import (
    BreakerSpec,
    HostStats,
    PermanentError,
    RateLimitSpec,
    TransientError,
    backoff_hook,
    breaker_for,
    breaker_retry_after,
    classify_exception,
    host_stats,
    limiter_for,
)
from agents.base.security import (
    AppliedAuth,
    HostUnresolvable,
    HttpAuth,
    apply_auth,
    check_url,
    http_client,
    redact_url,
    refuse_secret_headers,
)
from agents.base.storage import DataRoot
from agents.data_fetch_retry.download import Completed, Partial, attempt_download, finish
from ml.retry_strategy.policy import FailureContext, clamp
from ml.slot import Decider

registry = ActionRegistry("data-fetch-retry")

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class FetchBody(ActionBody):
    """One URL to download into the run dir."""

    url: str = Field(description="http:// or https:// URL (no credentials inside it)")
    auth: HttpAuth | None = Field(None, description="bearer, API key or basic auth")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra non-secret request headers"
    )
    filename: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$",
        description="name of the file in the run dir (default: from the URL path)",
    )
    expected_sha256: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{64}$", description="refuse the file unless it hashes to this"
    )
    max_bytes: int | None = Field(None, ge=1, description="refuse files larger than this")
    max_attempts: int = Field(5, ge=1, le=50, description="attempts in this call")
    wait_initial_s: float = Field(0.5, ge=0, le=60, description="first backoff (doubles)")
    wait_max_s: float = Field(30.0, ge=0, le=600, description="longest backoff")
    wait_jitter_s: float = Field(1.0, ge=0, le=60, description="random jitter added per wait")
    max_retry_after_s: float = Field(
        120.0, ge=0, description="a longer Retry-After ends this call (retryable error)"
    )
    deadline_s: float | None = Field(
        600.0, gt=0, description="time budget of all attempts together (None: no limit)"
    )
    timeout_s: float = Field(60.0, gt=0, le=3600, description="timeout of each request")
    resume: bool = Field(True, description="resume a partial download with Range")
    verify_tls: bool = Field(True, description="verify the server's TLS certificate")
    rate_limit: RateLimitSpec | None = Field(None, description="per-host request rate limit")
    breaker: BreakerSpec = Field(
        default_factory=lambda: BreakerSpec(), description="per-host circuit breaker"
    )
    strategy: Literal["static", "adaptive"] = Field(
        "static",
        description="static: the backoff above; adaptive: the retry_strategy model decides "
        "each retry and its delay, within max_attempts, wait_max_s/max_retry_after_s and "
        "deadline_s",
    )

    _headers = field_validator("headers")(refuse_secret_headers)


def file_name(url: httpx.URL, override: str | None) -> str:
    """A safe file name: the override, else the last URL path segment, else 'download'."""
    if override:
        return override
    last = unquote(url.path.rstrip("/").rsplit("/", 1)[-1])
    name = _SAFE_NAME.sub("_", last).lstrip("._")
    return name[:200] or "download"


def _spool(root: DataRoot, out: str) -> Path:
    """Where partial files live: the run dir itself on a local DATA_ROOT, else a local cache."""
    if root.protocol in ("file", "local"):
        return Path(out)
    digest = hashlib.sha256(out.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "agent-fetch" / digest


def _place(local: Path, root: DataRoot, dest: str) -> None:
    if root.protocol in ("file", "local"):
        return
    root.fs.put_file(str(local), dest)
    shutil.rmtree(local.parent, ignore_errors=True)


@dataclass
class Tally:
    """What the attempts cost: how many, seconds of backoff, seconds held by the rate limit."""

    attempts: int = 0
    waited_s: float = 0.0
    limited_s: float = 0.0
    decisions: list[dict[str, Any]] = field(default_factory=list)


async def _download(
    client: httpx.AsyncClient,
    ctx: ActionContext,
    body: FetchBody,
    partial: Partial,
    auth: AppliedAuth,
    *,
    breaker: pybreaker.CircuitBreaker,
    limiter: AsyncLimiter | None,
    tally: Tally,
    stats: HostStats,
) -> Completed:
    """Attempt the download until it completes, fails for good, or the attempts run out."""
    failed_at: float | None = None
    async for attempt in stamina.retry_context(
        on=backoff_hook(body.max_retry_after_s),
        attempts=body.max_attempts,
        timeout=body.deadline_s,
        wait_initial=body.wait_initial_s,
        wait_max=body.wait_max_s,
        wait_jitter=body.wait_jitter_s,
    ):
        with attempt:
            if failed_at is not None:
                tally.waited_s += time.monotonic() - failed_at
            if limiter is not None:
                started = time.monotonic()
                await limiter.acquire()
                tally.limited_s += time.monotonic() - started
            tally.attempts += 1
            called = time.monotonic()
            try:
                with breaker.calling():
                    done = await _attempt(client, ctx, body, partial, auth)
            except TransientError:
                failed_at = time.monotonic()
                stats.record(ok=False, latency_s=failed_at - called)
                raise
            stats.record(ok=True, latency_s=time.monotonic() - called)
            return done
    raise AssertionError("unreachable: stamina re-raises the last failure")


def _failure(
    exc: TransientError | PermanentError,
    body: FetchBody,
    attempt: int,
    elapsed: float,
    stats: HostStats,
) -> FailureContext:
    """The retry model's input for a failed attempt of this call."""
    timeout = exc.status_code is None and "Timeout" in exc.message
    retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
    return FailureContext(
        status=exc.status_code,
        error_class="http" if exc.status_code else ("timeout" if timeout else "connect"),
        retry_after_s=retry_after,
        attempt=attempt,
        elapsed_s=elapsed,
        host_error_rate=stats.error_rate,
        host_latency_ms=stats.latency_ms,
        remaining_s=body.deadline_s - elapsed if body.deadline_s else math.inf,
        attempts_left=body.max_attempts - attempt,
        # The longest wait this call allows: a Retry-After up to max_retry_after_s, else
        # wait_max_s (the same bounds the static backoff keeps).
        max_interval_s=max(body.wait_max_s, body.max_retry_after_s if retry_after else 0.0),
        retryable=isinstance(exc, TransientError),
    )


async def _download_adaptive(
    client: httpx.AsyncClient,
    ctx: ActionContext,
    body: FetchBody,
    partial: Partial,
    auth: AppliedAuth,
    *,
    breaker: pybreaker.CircuitBreaker,
    limiter: AsyncLimiter | None,
    tally: Tally,
    stats: HostStats,
    decider: Decider,
) -> Completed:
    """Attempt the download, asking the retry model after each failure whether and when."""
    started = time.monotonic()
    while True:
        if limiter is not None:
            waited = time.monotonic()
            await limiter.acquire()
            tally.limited_s += time.monotonic() - waited
        tally.attempts += 1
        called = time.monotonic()
        try:
            with breaker.calling():
                done = await _attempt(client, ctx, body, partial, auth)
        except (TransientError, PermanentError) as exc:
            now = time.monotonic()
            if isinstance(exc, TransientError):
                stats.record(ok=False, latency_s=now - called)
            failure = _failure(exc, body, tally.attempts, now - started, stats)
            # The spec's limits are enforced here, outside the model, whatever it says.
            decision = clamp(decider.predictor.decide(failure), failure)
            tally.decisions.append(
                {
                    "attempt": tally.attempts,
                    "status_code": exc.status_code,
                    "retry": decision.retry,
                    "delay_s": round(decision.delay_s, 3),
                    "reason": decision.reason,
                    **decider.provenance(),
                }
            )
            if not decision.retry:
                raise
            await asyncio.sleep(decision.delay_s)
            tally.waited_s += decision.delay_s
            continue
        stats.record(ok=True, latency_s=time.monotonic() - called)
        return done


class FetchResult(ActionResult):
    """What `fetch` downloaded, where it is, and what it took to get it."""

    uri: str = Field(description="the downloaded file, under DATA_ROOT")
    bytes: int
    sha256: str
    filename: str
    url: str = Field(description="the URL answered last (after redirects), credentials redacted")
    status_code: int
    content_type: str | None
    attempts: int
    waited_s: float = Field(description="seconds spent backing off between attempts")
    rate_limited_s: float = Field(description="seconds spent waiting on the rate limit")
    resumed_from: int = Field(description="the byte offset the last attempt resumed from")
    etag: str | None
    last_modified: str | None
    retry_strategy: Literal["static", "adaptive"]
    retry_decider: dict[str, Any] | None = Field(
        None, description="adaptive: the model version that decided the retries"
    )
    decisions: list[dict[str, Any]] | None = Field(
        None, description="adaptive: each retry decision, in order"
    )

    def as_output(self) -> dict[str, Any]:
        # A static fetch's output has no decider keys at all, as before it was typed.
        static = self.retry_decider is None
        return self.model_dump(
            mode="json", by_alias=True, exclude={"retry_decider", "decisions"} if static else None
        )


@registry.action(
    "fetch",
    FetchBody,
    # The smoke workflow's source (workflows/test.yaml), which the launcher serves.
    example={"url": "http://127.0.0.1:8199/remote/orders_api.json", "max_attempts": 5},
    description="download a URL with retries and resume",
)
async def fetch(body: FetchBody, ctx: ActionContext) -> FetchResult:
    """Download `url` into the run dir; a `FetchResult`. A 4xx (but 408/429) is a
    non-retryable error; exhausted attempts or an open circuit are retryable errors carrying
    `retry_after_s`, so the engine's retry policy can take over.
    """
    target = await check_url(body.url, ctx.settings)
    auth = apply_auth(body.auth, ctx.settings, body.url)
    host = f"{target.host}:{target.port or (443 if target.scheme == 'https' else 80)}"
    breaker = breaker_for(host, body.breaker.fail_max, body.breaker.reset_timeout_s)
    rate = body.rate_limit
    limiter = limiter_for(host, rate.requests, rate.per_s) if rate else None
    name = file_name(target, body.filename)
    root = DataRoot.from_setting(ctx.settings.data_root)
    out = root.run_dir(ctx.run_id, ctx.step_id)
    spool = _spool(root, out)
    await asyncio.to_thread(spool.mkdir, parents=True, exist_ok=True)
    partial = Partial(spool / f"{name}.part")
    tally = Tally()
    progress: dict[str, Any] = {"url": redact_url(body.url, auth.secrets), "host": host}
    decider = ctx.models["retry_strategy"].current if body.strategy == "adaptive" else None
    if decider is not None:
        progress["retry_decider"] = decider.provenance()
        progress["decisions"] = tally.decisions  # filled in as the attempts go
    guards: dict[str, Any] = {"breaker": breaker, "limiter": limiter, "tally": tally}
    guards["stats"] = host_stats(host)
    try:
        async with http_client(ctx.http, verify_tls=body.verify_tls) as client:
            if decider is None:
                done = await _download(client, ctx, body, partial, auth, **guards)
            else:
                done = await _download_adaptive(
                    client, ctx, body, partial, auth, decider=decider, **guards
                )
    except pybreaker.CircuitBreakerError as exc:
        raise AgentError(
            f"the circuit for {host} is open after repeated failures",
            code="circuit_open",
            retryable=True,
            retry_after_s=round(breaker_retry_after(breaker), 3),
            details={**progress, "attempts": tally.attempts, "waited_s": round(tally.waited_s, 3)},
        ) from exc
    except TransientError as exc:
        raise AgentError(
            f"{exc.message}; gave up after {tally.attempts} attempts",
            code="fetch_exhausted",
            retryable=True,
            retry_after_s=exc.retry_after_s,
            details={
                **progress,
                "status_code": exc.status_code,
                "attempts": tally.attempts,
                "waited_s": round(tally.waited_s, 3),
            },
        ) from exc
    except PermanentError as exc:
        raise AgentError(
            exc.message,
            code="fetch_rejected",
            details={**progress, "status_code": exc.status_code, "attempts": tally.attempts},
        ) from exc
    if body.expected_sha256 and done.sha256 != body.expected_sha256.lower():
        await asyncio.to_thread(partial.discard)
        raise AgentError(
            f"sha256 mismatch: expected {body.expected_sha256.lower()}, got {done.sha256}",
            code="checksum_mismatch",
            details={**progress, "bytes": done.bytes, "attempts": tally.attempts},
        )
    local = spool / name
    await asyncio.to_thread(finish, partial, local)
    dest = posixpath.join(out, name)  # `name` is sanitized: no separators, no leading dot
    await asyncio.to_thread(_place, local, root, dest)
    return FetchResult(
        uri=root.uri(dest),
        bytes=done.bytes,
        sha256=done.sha256,
        filename=name,
        url=done.final_url,
        status_code=done.status_code,
        content_type=done.content_type,
        attempts=tally.attempts,
        waited_s=round(tally.waited_s, 3),
        rate_limited_s=round(tally.limited_s, 3),
        resumed_from=done.resumed_from,
        etag=done.etag,
        last_modified=done.last_modified,
        retry_strategy=body.strategy,
        retry_decider=decider.provenance() if decider else None,
        decisions=tally.decisions if decider else None,
    )


async def _attempt(
    client: httpx.AsyncClient,
    ctx: ActionContext,
    body: FetchBody,
    partial: Partial,
    auth: AppliedAuth,
) -> Completed:
    """One attempt, with transport failures sorted into transient and permanent."""
    try:
        return await attempt_download(
            client,
            ctx,
            url=body.url,
            partial=partial,
            headers=body.headers,
            auth=auth,
            timeout_s=body.timeout_s,
            max_bytes=body.max_bytes,
            resume=body.resume,
        )
    except (httpx.HTTPError, HostUnresolvable) as exc:
        raise classify_exception(exc, auth.secrets) from exc
