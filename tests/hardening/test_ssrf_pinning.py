"""Hardening finding 6: allowlist entries per port, and the checked address is the one
connected to (DNS rebinding).

DNS is outside the project and cannot be steered here, so the resolver is replaced (the one
stand-in in this file): the name answers the allowed address at check time and an internal
one afterwards, as a rebinding DNS server would. Both servers are real, on 127.0.0.1 and
127.0.0.2, on the same port. (A client that resolved the name again would reach the internal
server, or fail where the HTTP library resolves through a path the stand-in does not cover;
either way not the "public" answer this test requires.)
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.base.actions import AgentError
from agents.base.security import check_host, guarded_stream, pinned_client
from agents.base.settings import AgentSettings


def _handler(answer: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def two_servers() -> Iterator[int]:
    """'public' on 127.0.0.1:P and 'internal' on 127.0.0.2:P; yields P."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    servers = [
        ThreadingHTTPServer(("127.0.0.1", port), _handler(b"public")),
        ThreadingHTTPServer(("127.0.0.2", port), _handler(b"internal")),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    answers = ["127.0.0.1"]  # the check's answer; every later lookup gets the internal one
    base = asyncio.get_running_loop().__class__
    real = base.getaddrinfo

    async def lookup(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return await real(self, host, port, *args, **kwargs)
        address = answers.pop(0) if answers else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    real_sync = socket.getaddrinfo

    def lookup_sync(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real_sync(host, port, *args, **kwargs)
        address = answers.pop(0) if answers else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(base, "getaddrinfo", lookup)
    monkeypatch.setattr(socket, "getaddrinfo", lookup_sync)  # the HTTP client's own lookups
    return answers


async def test_the_connection_goes_to_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with two_servers() as port:
        _rebinding_dns(monkeypatch)
        settings = AgentSettings(allow_private_hosts=[f"127.0.0.1:{port}"])
        async with (
            pinned_client(timeout=5) as client,
            guarded_stream(client, f"http://rebind.example:{port}/", settings) as response,
        ):
            body = await response.aread()
        assert body == b"public"
        assert str(response.url) == f"http://rebind.example:{port}/"


async def test_an_allowlisted_port_opens_that_port_only() -> None:
    allowed = AgentSettings(allow_private_hosts=["127.0.0.1:18931", "10.0.0.0/8:443"])
    assert await check_host("127.0.0.1", 18931, allowed)
    assert await check_host("10.1.2.3", 443, allowed)
    for host, port in (("127.0.0.1", 5432), ("127.0.0.1", 8000), ("10.1.2.3", 80)):
        with pytest.raises(AgentError, match="AGENT_ALLOW_PRIVATE_HOSTS"):
            await check_host(host, port, allowed)
    whole_host = AgentSettings(allow_private_hosts=["127.0.0.1"])
    assert await check_host("127.0.0.1", 5432, whole_host)
