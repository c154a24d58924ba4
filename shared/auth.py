"""Bearer-token checks: API keys for the controller's clients, one service token inside."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from shared.errors import Forbidden, Unauthorized

Scope = Literal["read", "submit", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "submit", "admin")


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its id (shown in logs, never secret), the key and what it may do."""

    id: str
    key: str
    scopes: frozenset[str]


def key_id(key: str) -> str:
    """A stable, non-secret name for a key given without one."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def require_scope(request: Request, keys: Iterable[ApiKey], scope: Scope) -> ApiKey:
    """The key the request carries: 401 when missing or unknown, 403 without `scope`."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer <key>)")
    found: ApiKey | None = None
    for candidate in keys:  # every comparison runs, so timing tells nothing
        if candidate.key and hmac.compare_digest(token.encode(), candidate.key.encode()):
            found = candidate
    if found is None:
        raise Unauthorized("invalid bearer token")
    if scope not in found.scopes:
        raise Forbidden(
            f"key {found.id!r} lacks the {scope!r} scope (it has: "
            f"{', '.join(sorted(found.scopes)) or 'none'})",
            code="missing_scope",
        )
    request.state.api_key_id = found.id
    return found


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_token(request: Request, accepted: Iterable[str]) -> None:
    """Raise 401 unless the request carries one of the accepted bearer tokens."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    # compare_digest on every candidate so timing does not reveal which key nearly matched
    matched = False
    for candidate in accepted:
        if candidate and hmac.compare_digest(token.encode(), candidate.encode()):
            matched = True
    if not matched:
        raise Unauthorized("invalid bearer token")


def service_headers(token: str) -> dict[str, str]:
    """Headers a service sends to another service."""
    return {"Authorization": f"Bearer {token}"}
