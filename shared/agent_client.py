"""The one client the platform uses to call agents: errors classified for the retry policy.

aiohttp rather than httpx: on this hot path `bench/agent_client.py` measured aiohttp at about
20 times httpx's requests/s from one process (4,055 vs 198 req/s at concurrency 64).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from shared.agent_registry import AgentDirectory, AgentEndpoint
from shared.auth import service_headers
from shared.errors import AppError

# Agent answers worth retrying when the body does not say: the request may succeed unchanged.
# Other 4xx (validation, not found, conflict) fail at once.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to the policy's own backoff


class AgentClient:
    """Calls `POST {agent}/api/v1/{action}` with the service token and an Idempotency-Key.

    Built-in agents are found in `agent_urls`; any other name in the `directory` of registered
    agents, whose calls keep the agent's own limits: at most its `timeout_s` per call, at most
    its `max_concurrency` calls in flight from this process. The protocol is the same for both.
    """

    def __init__(
        self,
        agent_urls: dict[str, str],
        token: str,
        *,
        max_connections: int = 200,
        directory: AgentDirectory | None = None,
    ) -> None:
        self.agent_urls = agent_urls
        self._headers = service_headers(token)
        self._max_connections = max_connections
        self._directory = directory
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                json_serialize=json.dumps,
            )
        return self._session

    async def aclose(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            await self._session.close()

    async def _registered(self, agent: str) -> AgentEndpoint:
        endpoint = None
        if self._directory is not None:
            try:
                endpoint = await self._directory.lookup(agent)
            except Exception as exc:  # the database away: the step may succeed later
                raise AgentCallError(
                    f"cannot read the registered agents to find {agent!r}: {exc}",
                    code="registry_unavailable",
                    retryable=True,
                ) from exc
        if endpoint is None:
            raise AgentCallError(
                f"no URL configured for agent {agent!r}", code="unknown_agent", retryable=False
            )
        return endpoint

    def _slot(self, endpoint: AgentEndpoint) -> asyncio.Semaphore:
        # A changed limit gets a new semaphore; calls holding the old one finish under it.
        held = self._slots.get(endpoint.name)
        if held is None or held[0] != endpoint.max_concurrency:
            held = (endpoint.max_concurrency, asyncio.Semaphore(endpoint.max_concurrency))
            self._slots[endpoint.name] = held
        return held[1]

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
        if base is not None:
            return await self._post(
                base, agent, action, params, idempotency_key, timeout_s, context
            )
        endpoint = await self._registered(agent)
        async with self._slot(endpoint):
            return await self._post(
                endpoint.base_url,
                agent,
                action,
                params,
                idempotency_key,
                min(timeout_s, endpoint.timeout_s),
                context,
            )

    async def _post(
        self,
        base: str,
        agent: str,
        action: str,
        params: dict[str, Any],
        idempotency_key: str,
        timeout_s: float,
        context: dict[str, str] | None,
    ) -> AgentReply:
        headers = {**self._headers, "Idempotency-Key": idempotency_key, **(context or {})}
        started = time.perf_counter()
        try:
            async with self._http().post(
                f"{base}/api/v1/{action}",
                json=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s)),
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
                replayed = response.headers.get("Idempotent-Replayed") == "true"
        except TimeoutError as exc:
            raise AgentCallError(
                f"{agent}.{action} did not answer within {timeout_s:g}s",
                code="timeout",
                retryable=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise AgentCallError(
                f"{agent} unreachable: {type(exc).__name__}: {exc}",
                code="connection_error",
                retryable=True,
            ) from exc
        latency = time.perf_counter() - started
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if status == 200:
            if body is None and raw:
                raise AgentCallError(
                    f"{agent}.{action} answered 200 with a body that is not JSON",
                    code="bad_response",
                    retryable=True,
                    status=status,
                )
            return AgentReply(body, latency, replayed)
        if not isinstance(body, dict):
            body = {}
        retryable = body.get("retryable")
        if not isinstance(retryable, bool):
            retryable = status in RETRYABLE_STATUS
        raise AgentCallError(
            str(body.get("message") or raw[:500].decode(errors="replace") or f"HTTP {status}"),
            code=str(body.get("error") or f"http_{status}"),
            retryable=retryable,
            status=status,
            retry_after_s=_retry_after(retry_after),
        )
