"""What the checks share: one HTTP client to the agent, the error-body rule, the OpenAPI
operations of the actions, and a check's outcome."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

Verdict = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Result:
    check: str
    verdict: Verdict
    reason: str

    def line(self) -> str:
        """The one line the kit prints for this check."""
        return f"{self.verdict} {self.check}: {self.reason}"


class Failed(Exception):
    """A check's finding that the agent does not conform; the message says why."""


class Skipped(Exception):
    """A check that cannot be made against this agent; the message says why."""


@dataclass(frozen=True)
class Operation:
    """One action as the agent's OpenAPI document declares it."""

    name: str
    example: Any
    schema: dict[str, Any]
    read_only: bool
    ledger: bool


@dataclass
class Agent:
    """The agent under test and what the checks learnt about it so far."""

    client: httpx.Client
    token: str | None
    actions: list[str] = field(default_factory=list)
    operations: dict[str, Operation] = field(default_factory=dict)

    def auth(self, token: str | None = "") -> dict[str, str]:
        """The Authorization header: the kit's token by default, another one, or none (None)."""
        chosen = self.token if token == "" else token
        return {"Authorization": f"Bearer {chosen}"} if chosen else {}

    def post(
        self,
        action: str,
        body: Any = None,
        *,
        token: str | None = "",
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST /api/v1/{action} with a JSON body (or raw `content`)."""
        sent = {**self.auth(token), **(headers or {})}
        if content is not None:
            sent["Content-Type"] = "application/json"
            return self.client.post(f"/api/v1/{action}", content=content, headers=sent)
        return self.client.post(f"/api/v1/{action}", json=body, headers=sent)


def nonce(prefix: str) -> str:
    """A value no earlier run of the kit used (Idempotency-Keys, bodies)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def json_of(response: httpx.Response) -> Any:
    """The response's JSON body, or a Failed naming what came instead."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Failed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not JSON: {response.text[:120]!r}"
        ) from exc


def error_body(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert `response` is `status` with the error body `{"error", "message", "retryable"}`."""
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code != status:
        raise Failed(
            f"{where}: expected {status}, got {response.status_code} {response.text[:160]!r}"
        )
    body = json_of(response)
    if not isinstance(body, dict):
        raise Failed(f"{where}: the error body is not a JSON object: {body!r}")
    problems = [
        f"{name} is not a {kind.__name__}"
        for name, kind in (("error", str), ("message", str), ("retryable", bool))
        if not isinstance(body.get(name), kind)
    ]
    if problems:
        raise Failed(f"{where}: not the error format ({'; '.join(problems)}): {body!r}")
    if code is not None and body["error"] != code:
        raise Failed(f"{where}: expected error {code!r}, got {body['error']!r}")
    return body


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (#/components/schemas/...) of the OpenAPI document."""
    for _ in range(10):
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = document
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node if isinstance(node, dict) else {}
    return schema
