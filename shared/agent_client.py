"""The one client the platform uses to call agents: errors classified for the retry policy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from shared.auth import service_headers
from shared.errors import AppError

# Agent answers that are worth retrying: the request may succeed later unchanged.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class AgentCallError(AppError):
    """An agent call that did not produce an output."""

    code = "agent_error"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.status = status
        self.retry_after_s = retry_after_s

    def as_dict(self) -> dict[str, Any]:
        """The error as stored on the step and sent in events."""
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.status is not None:
            out["status"] = self.status
        return out


@dataclass
class AgentReply:
    output: Any
    latency_s: float
    replayed: bool


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to the policy's own backoff


class AgentClient:
    """Calls `POST {agent}/api/v1/{action}` with the service token and an Idempotency-Key."""

    def __init__(
        self,
        agent_urls: dict[str, str],
        token: str,
        *,
        max_connections: int = 200,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.agent_urls = agent_urls
        self._headers = service_headers(token)
        self._http = http or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=httpx.Timeout(60.0, connect=5.0),
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    async def call(
        self,
        agent: str,
        action: str,
        params: dict[str, Any],
        *,
        idempotency_key: str,
        timeout_s: float,
        context: dict[str, str] | None = None,
    ) -> AgentReply:
        """Run an action; raise AgentCallError with `retryable` set from the failure's kind."""
        base = self.agent_urls.get(agent)
        if base is None:
            raise AgentCallError(
                f"no URL configured for agent {agent!r}", code="unknown_agent", retryable=False
            )
        headers = {**self._headers, "Idempotency-Key": idempotency_key, **(context or {})}
        started = time.perf_counter()
        try:
            response = await self._http.post(
                f"{base}/api/v1/{action}",
                json=params,
                headers=headers,
                timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            )
        except httpx.TimeoutException as exc:
            raise AgentCallError(
                f"{agent}.{action} did not answer within {timeout_s}s ({type(exc).__name__})",
                code="timeout",
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise AgentCallError(
                f"{agent} unreachable: {type(exc).__name__}: {exc}",
                code="connection_error",
                retryable=True,
            ) from exc
        latency = time.perf_counter() - started
        if response.status_code == 200:
            return AgentReply(
                response.json(), latency, response.headers.get("idempotent-replayed") == "true"
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        retryable = body.get("retryable")
        if not isinstance(retryable, bool):
            retryable = response.status_code in RETRYABLE_STATUS
        raise AgentCallError(
            str(body.get("message") or response.text[:500] or f"HTTP {response.status_code}"),
            code=str(body.get("error") or f"http_{response.status_code}"),
            retryable=retryable,
            status=response.status_code,
            retry_after_s=_retry_after(response),
        )
