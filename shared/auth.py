"""Bearer-token checks: API keys for the controller's clients, one service token inside."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import Request

from shared.errors import Unauthorized


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
