"""Hardening finding 3: any environment variable of an agent could be sent to a host of the
spec's choosing as a credential (`OTHER_TEAM_TOKEN`, even `HOME`). Now an agent reads only
the names declared in AGENT_CREDENTIALS, and sends each only to the hosts declared for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agents.base.settings import AgentSettings
from agents.data_fetch_retry.app import create_app
from tests.conftest import asgi_client, service_auth


@contextmanager
def recording_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every Authorization header it receives."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data.csv", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("name", "declared", "why"),
    [
        ("OTHER_TEAM_TOKEN", {}, "not declared"),
        ("HOME", {}, "not declared"),
        ("ORDERS_API_TOKEN", {"ORDERS_API_TOKEN": ["api.example.com"]}, "may not be sent"),
        ("ORDERS_API_TOKEN", {"ORDERS_API_TOKEN": ["127.0.0.1:1"]}, "may not be sent"),
        ("ORDERS_API_TOKEN", {"ORDERS_API_TOKEN": []}, "may not be sent"),
    ],
)
async def test_an_undeclared_credential_or_host_sends_nothing(
    common_env: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    declared: dict[str, list[str]],
    why: str,
) -> None:
    monkeypatch.setenv("OTHER_TEAM_TOKEN", "other-team-secret-0001")
    monkeypatch.setenv("ORDERS_API_TOKEN", "orders-secret-0001")
    settings = AgentSettings(
        **{**common_env, "credentials": declared},
        allowed_roots=[str(tmp_path)],
        allow_private_hosts=["127.0.0.1"],
    )
    with recording_server() as (url, seen):
        async with asgi_client(create_app(settings)) as client:
            response = await client.post(
                "/api/v1/fetch",
                json={"url": url, "auth": {"type": "bearer", "credential": name}},
                headers={**service_auth(), "X-Run-Id": "cred", "X-Step-Id": "s"},
            )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "credential_not_allowed"
    assert why in response.json()["message"]
    assert seen == []  # not one request went out, with or without the secret


async def test_a_declared_credential_reaches_its_host(
    common_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERS_API_TOKEN", "orders-secret-0001")
    with recording_server() as (url, seen):
        port = url.split(":")[2].split("/")[0]
        settings = AgentSettings(
            **{**common_env, "credentials": {"ORDERS_API_TOKEN": [f"127.0.0.1:{port}"]}},
            allowed_roots=[str(tmp_path)],
            allow_private_hosts=["127.0.0.1"],
        )
        async with asgi_client(create_app(settings)) as client:
            response = await client.post(
                "/api/v1/fetch",
                json={"url": url, "auth": {"type": "bearer", "credential": "ORDERS_API_TOKEN"}},
                headers={**service_auth(), "X-Run-Id": "cred", "X-Step-Id": "ok"},
            )
    assert response.status_code == 200, response.text
    assert seen == ["Bearer orders-secret-0001"]
