"""Reading what an agent offers before it is registered: its base URL passes the platform's
SSRF rule (`shared/ssrf.py`), then `GET {base_url}/api/v1/actions` (with the service token)
must answer an action list. Every refusal is a 422 naming `base_url`, with a `reason` the
Agent resource sync writes into the resource's status."""

from __future__ import annotations

import re
from typing import Any

import httpx

from shared import ssrf
from shared.errors import ValidationFailed

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_ACTIONS = 200
_ALLOWLIST_SETTING = "CONTROLLER_AGENT_ALLOW_PRIVATE_HOSTS"


class ProbeFailed(ValidationFailed):
    """The agent at `base_url` cannot be registered; `reason` says why in one CamelCase word."""

    code = "agent_unreachable"

    def __init__(self, message: str, *, reason: str, field: str = "base_url") -> None:
        super().__init__(
            f"{field}: {message}",
            details=[{"field": field, "message": message, "type": reason}],
        )
        self.reason = reason


def normalize_url(base_url: str) -> str:
    """`base_url` without a trailing slash; refused unless plain http(s) with a host."""
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ProbeFailed(f"not a URL: {exc}", reason="InvalidSpec") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProbeFailed("must be an http or https URL with a host", reason="InvalidSpec")
    if url.userinfo:
        raise ProbeFailed("must not carry credentials", reason="InvalidSpec")
    if url.query or url.fragment:
        raise ProbeFailed("must not have a query or a fragment", reason="InvalidSpec")
    return str(url).rstrip("/")


def parse_actions(body: Any) -> list[str]:
    """The action names of a `GET /api/v1/actions` answer: the protocol's object of actions
    (name -> {description, body}), or a plain list of names."""
    names = list(body) if isinstance(body, dict | list) else None
    if not names or len(names) > MAX_ACTIONS:
        raise ValueError(f"expected an object of 1 to {MAX_ACTIONS} actions")
    if isinstance(body, dict) and not all(isinstance(v, dict) for v in body.values()):
        raise ValueError("each action must map to an object ({description, body})")
    for name in names:
        if not isinstance(name, str) or not ACTION_PATTERN.match(name):
            raise ValueError(f"{str(name)[:80]!r} is not an action name")
    return sorted(set(names))


async def read_actions(
    http: httpx.AsyncClient,
    base_url: str,
    *,
    token: str,
    allow_private_hosts: list[str],
    timeout_s: float,
) -> list[str]:
    """The actions the agent at `base_url` (normalized) says it offers."""
    url = httpx.URL(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        await ssrf.check_target(url.host, port, allow_private_hosts, setting=_ALLOWLIST_SETTING)
    except ssrf.TargetRefused as exc:
        raise ProbeFailed(str(exc), reason="HostNotAllowed") from exc
    except ssrf.TargetUnresolvable as exc:
        raise ProbeFailed(str(exc), reason="Unreachable") from exc
    try:
        response = await http.get(
            f"{base_url}/api/v1/actions",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            follow_redirects=False,  # a redirect could lead past the check above
        )
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # ValueError: IDNA, ports
        raise ProbeFailed(
            f"GET {base_url}/api/v1/actions failed: {type(exc).__name__}: {exc}",
            reason="Unreachable",
        ) from exc
    # The body is not echoed: an admin's probe must not read arbitrary internal pages.
    if response.status_code != 200:
        raise ProbeFailed(
            f"GET {base_url}/api/v1/actions answered HTTP {response.status_code}, not 200 "
            "with the agent's actions",
            reason="Unreachable",
        )
    try:
        return parse_actions(response.json())
    except ValueError as exc:
        raise ProbeFailed(
            f"GET {base_url}/api/v1/actions did not answer an action list: {exc}",
            reason="NotAnAgent",
        ) from exc
