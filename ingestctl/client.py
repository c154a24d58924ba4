"""The controller's public API as the CLI uses it; every failure becomes one clear message."""

from __future__ import annotations

from typing import Any

import httpx


class CliError(Exception):
    """A failure to show the user as is (exit code 1)."""


class Controller:
    def __init__(self, url: str, api_key: str | None, timeout_s: float = 15.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the parsed JSON answer, or a CliError saying what went wrong."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"controller unreachable at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise CliError(describe(response))
        return response.json() if response.content else None


def describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    message = body.get("message") or body
    hint = {
        401: " (set --api-key or INGESTCTL_API_KEY)",
        403: " (the key lacks the scope this needs)",
    }.get(response.status_code, "")
    return f"HTTP {response.status_code} {body.get('error', '')}: {message}{hint}"
