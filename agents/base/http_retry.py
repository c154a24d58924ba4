"""Which HTTP failures are worth another attempt, how long to wait, and per-host guards.

Retryability is a property of the error (Temporal-style): `TransientError` carries the
server's Retry-After when it gave one; `PermanentError` ends the attempts at once. The
circuit breakers (pybreaker) and rate limiters (aiolimiter) live per host for the life of the
agent process, so one misbehaving host cannot eat every worker's attempts.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache

import httpx
import pybreaker
from aiolimiter import AsyncLimiter
from pydantic import Field

from agents.base.actions import ActionBody, AgentError
from agents.base.security import HostUnresolvable, scrub

# 501 Not Implemented and 505 HTTP Version Not Supported will not change on a retry.
_PERMANENT_5XX = {501, 505}
_TRANSIENT_4XX = {408, 425, 429}


class RateLimitSpec(ActionBody):
    """At most `requests` requests per `per_s` seconds (a leaky bucket, aiolimiter)."""

    requests: float = Field(ge=1, description="requests allowed per period (also the burst)")
    per_s: float = Field(1.0, gt=0, description="the period in seconds")


class BreakerSpec(ActionBody):
    """When a host's circuit opens and for how long."""

    fail_max: int = Field(5, ge=1, le=1000, description="consecutive transient failures")
    reset_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="seconds the circuit stays open before a trial call"
    )


class TransientError(Exception):
    """A failure another attempt may cure (connection trouble, 5xx, 429, 408)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class PermanentError(Exception):
    """A failure that repeats on every attempt (404, 401, bad TLS certificate...)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait (Retry-After as delta-seconds or HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_transient_status(status: int) -> bool:
    """5xx (but 501, 505), 408, 425 and 429."""
    return status in _TRANSIENT_4XX or (status >= 500 and status not in _PERMANENT_5XX)


def check_status(response: httpx.Response, what: str) -> None:
    """Raise TransientError or PermanentError unless the response is a success."""
    status = response.status_code
    if status < 400:
        return
    message = f"{what} answered HTTP {status}"
    if is_transient_status(status):
        raise TransientError(
            message, status_code=status, retry_after_s=retry_after_s(response.headers)
        )
    raise PermanentError(message, status_code=status)


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify_exception(exc: Exception, secrets: list[str]) -> Exception:
    """The Transient/PermanentError for a transport failure (secrets scrubbed from the text)."""
    message = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, HostUnresolvable):
        return TransientError(message)
    if _tls_failure(exc):
        return PermanentError(message)
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return TransientError(message)
    if isinstance(exc, httpx.ProxyError):
        return TransientError(message)
    return PermanentError(message)


def backoff_hook(max_retry_after_s: float) -> Callable[[Exception], bool | float]:
    """stamina's `on=`: retry transient errors, sleeping exactly Retry-After when given.

    A Retry-After beyond `max_retry_after_s` ends the attempts: the engine's own retry policy
    (which gets the wait as the error's retry_after_s) is the better place for a long wait.
    """

    def hook(exc: Exception) -> bool | float:
        if not isinstance(exc, TransientError):
            return False
        if exc.retry_after_s is None:
            return True
        if exc.retry_after_s > max_retry_after_s:
            return False
        return exc.retry_after_s

    return hook


def as_agent_error(exc: TransientError | PermanentError, **details: object) -> AgentError:
    """The action error for a failure that ended the attempts."""
    body = {"status_code": exc.status_code, **details}
    if isinstance(exc, TransientError):
        return AgentError(
            f"{exc.message}; giving up for now",
            code="source_unavailable",
            retryable=True,
            retry_after_s=exc.retry_after_s,
            details=body,
        )
    return AgentError(exc.message, code="source_rejected", details=body)


@lru_cache(maxsize=1024)
def breaker_for(host: str, fail_max: int, reset_timeout_s: float) -> pybreaker.CircuitBreaker:
    """The circuit breaker of one host (only transient failures count against it)."""
    return pybreaker.CircuitBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout_s,
        exclude=[lambda e: not isinstance(e, TransientError)],
        name=host,
        throw_new_error_on_trip=False,
    )


@dataclass
class HostStats:
    """A host's recent health as this agent saw it: EWMAs of failures and latency."""

    error_rate: float = 0.0
    latency_ms: float = 100.0

    def record(self, *, ok: bool, latency_s: float) -> None:
        """Fold one call in (weight 0.2: about the last five calls)."""
        self.error_rate += 0.2 * ((0.0 if ok else 1.0) - self.error_rate)
        self.latency_ms += 0.2 * (latency_s * 1000 - self.latency_ms)


@lru_cache(maxsize=1024)
def host_stats(host: str) -> HostStats:
    """The recent health of one host (the retry model's host features)."""
    return HostStats()


@lru_cache(maxsize=1024)
def limiter_for(host: str, requests: float, per_s: float) -> AsyncLimiter:
    """The rate limiter of one host: at most `requests` per `per_s` seconds."""
    return AsyncLimiter(requests, per_s)


def breaker_retry_after(breaker: pybreaker.CircuitBreaker) -> float:
    """Seconds until an open breaker lets a trial call through."""
    opened = breaker._state_storage.opened_at  # pybreaker exposes no public accessor
    if opened is None:
        return breaker.reset_timeout
    elapsed = (datetime.now(UTC) - opened).total_seconds()
    return max(0.0, breaker.reset_timeout - elapsed)
