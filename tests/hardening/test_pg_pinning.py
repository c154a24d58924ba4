"""Hardening finding 6 for PostgreSQL sources: the address that passed the SSRF check is the
one asyncpg connects to (DNS rebinding), and TLS verify-full still checks the URL's name.

DNS and the internet are outside the project and cannot be steered here, so two stand-ins:
the resolver (the name answers one address at check time and another afterwards, as a
rebinding DNS server would), and, in the first test only, the opening of a TCP connection to
the one "public" address, which records where it went and refuses it instead of reaching out.
PostgreSQL itself is the real one on 127.0.0.1:5432; nothing listens on 127.0.0.2:5432.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from agents.base.security import pinned_pg_target
from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, asgi_client, service_auth

NAME = "pg-rebind.example"
PUBLIC = "93.184.215.14"  # a global address: passes the check without an allowlist entry
URL = asyncpg_dsn(DATABASE_URL).replace("127.0.0.1", NAME)


def rebinding_dns(monkeypatch: pytest.MonkeyPatch, first: str, later: str) -> list[str]:
    """`NAME` answers `first` once, then `later`; returns the answers given, in order."""
    given: list[str] = []
    loop_class = asyncio.get_running_loop().__class__
    real, real_sync = loop_class.getaddrinfo, socket.getaddrinfo

    def answer(port: Any) -> list[Any]:
        given.append(first if not given else later)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (given[-1], int(port or 5432)))]

    async def lookup(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return await real(self, host, port, *args, **kwargs)
        return answer(port)

    def lookup_sync(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return real_sync(host, port, *args, **kwargs)
        return answer(port)

    monkeypatch.setattr(loop_class, "getaddrinfo", lookup)
    monkeypatch.setattr(socket, "getaddrinfo", lookup_sync)
    return given


@pytest.fixture
async def orders() -> AsyncIterator[str]:
    schema = f"pin_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'CREATE TABLE "{schema}".orders (id bigint PRIMARY KEY, note text)')
    await conn.execute(f"INSERT INTO \"{schema}\".orders VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def collect(
    settings: AgentSettings, schema: str, started: Callable[[], None] = lambda: None
) -> httpx.Response:
    body = {
        "source": {
            "kind": "postgres", "url": URL, "db_schema": schema, "table": "orders",
            "connect_timeout_s": 5,
        }
    }  # fmt: skip
    headers = {**service_auth(), "X-Run-Id": "pin-tests", "X-Step-Id": uuid.uuid4().hex}
    async with asgi_client(create_app(settings)) as client:
        started()  # after the app's own start (its heartbeat's first beat)
        return await client.post("/api/v1/collect", json=body, headers=headers)


async def test_a_name_rebound_to_localhost_after_the_check_is_not_reached(
    monkeypatch: pytest.MonkeyPatch, common_env: dict, tmp_path: Any, orders: str
) -> None:
    given = rebinding_dns(monkeypatch, first=PUBLIC, later="127.0.0.1")
    opened: list[str] = []
    loop_class = asyncio.get_running_loop().__class__
    real_connect = loop_class.create_connection

    async def connect(
        self: Any, factory: Any, host: Any = None, port: Any = None, **kw: Any
    ) -> Any:
        opened.append(str(host))
        if host == PUBLIC:
            raise ConnectionRefusedError(f"stand-in: {PUBLIC} is not reached from the tests")
        return await real_connect(self, factory, host, port, **kw)

    # Only the private address is unallowed: without pinning the second answer would pass.
    # The heartbeat beats once at start and then hourly: only the collect connects meanwhile.
    settings = AgentSettings(**common_env, heartbeat_s=3600)
    response = await collect(
        settings, orders, lambda: monkeypatch.setattr(loop_class, "create_connection", connect)
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "source_unavailable"
    assert opened and set(opened) == {PUBLIC}  # every attempt went to the checked address
    assert given == [PUBLIC]  # the name was resolved once, by the check


async def test_an_allowed_local_database_still_works_end_to_end(
    monkeypatch: pytest.MonkeyPatch, common_env: dict, orders: str
) -> None:
    given = rebinding_dns(monkeypatch, first="127.0.0.1", later="127.0.0.2")
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1:5432"])
    response = await collect(settings, orders)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["rows"] == 3 and out["complete"] is True
    assert given == ["127.0.0.1"]


async def test_verify_full_checks_the_name_in_the_url_not_the_pinned_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rebinding_dns(monkeypatch, first=PUBLIC, later=PUBLIC)
    settings = AgentSettings()
    target = await pinned_pg_target(NAME, 5432, settings, sslmode="verify-full")
    assert target.connect_args()["host"] == PUBLIC and target.tls is not None
    assert target.tls.check_hostname and target.tls.verify_mode == ssl.CERT_REQUIRED
    # asyncpg hands the TLS layer its host (the pinned IP); the name checked is the URL's.
    tls = target.tls.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=PUBLIC)
    assert tls.server_hostname == NAME
    plain = await pinned_pg_target(NAME, 5432, settings, sslmode="require")
    assert plain.tls is None and plain.connect_args() == {"host": PUBLIC, "port": 5432}
