"""Fixtures shared by every test: a real PostgreSQL schema and a real Redis, isolated per session.

TEST_DATABASE_URL / TEST_REDIS_URL choose the servers (defaults: the local ones on 5432/6379,
which `.ci/run` starts when they are absent).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.db.migrate import upgrade
from shared.db.session import asyncpg_dsn
from shared.settings import CommonSettings

DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICE_TOKEN = "test-service-token"
LOCAL = ["127.0.0.1", "localhost"]
# The credentials the tests name in their specs, each declared for the hosts the tests serve
# (AGENT_CREDENTIALS); salts are never sent anywhere.
CREDENTIALS: dict[str, list[str]] = {
    **dict.fromkeys(
        ["ORDERS_API_KEY", "ORDERS_API_TOKEN", "ORDERS_BASIC_PASSWORD", "ORDERS_DB_URL",
         "BROKEN_DB_URL", "TICKS_REDIS_URL", "E2E_ORDERS_TOKEN", "E2E_STREAM_REDIS_URL",
         # declared but never set: the tests of a missing credential
         "NOT_SET_ANYWHERE_42", "NOPE_X", "X_URL"],
        LOCAL,
    ),
    **dict.fromkeys(
        ["PII_SALT_A", "PII_SALT_B", "PII_SALT_SHORT", "PII_SALT_PROD", "PII_SALT_UNSET"], []
    ),
}  # fmt: skip


def target_schema(platform_schema: str) -> str:
    """The schema PostgreSQL merges of a test session may write to (never the platform's)."""
    return f"{platform_schema}_data"


def fresh_schema() -> Iterator[str]:
    """Create a schema with the migrations applied, yield its name, drop it afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    settings = CommonSettings(database_url=DATABASE_URL, db_schema=schema)
    upgrade(settings)
    yield schema

    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.execute(f'DROP SCHEMA IF EXISTS "{target_schema(schema)}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="session")
def db_schema() -> Iterator[str]:
    """A fresh schema with the migrations applied; dropped at the end of the session."""
    yield from fresh_schema()


@pytest.fixture(scope="module")
def module_schema() -> Iterator[str]:
    """A fresh migrated schema of this test module's own, dropped after its last test: claims,
    caps and counts see only the module's runs, and steps it leaves behind reach no other."""
    yield from fresh_schema()


@pytest.fixture(scope="module")
def module_env(common_env: dict, module_schema: str) -> dict:
    """`common_env` on the module's own schema (for modules that write runs or steps)."""
    return {
        **common_env,
        "db_schema": module_schema,
        "target_schemas": [target_schema(module_schema)],
    }


@pytest.fixture(scope="session")
def stream_prefix() -> str:
    """A Redis key prefix unique to this test session."""
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def common_env(
    db_schema: str, stream_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """Settings fields every service under test shares (pass as keyword arguments)."""
    data_root = tmp_path_factory.mktemp("data_root")
    return {
        "database_url": DATABASE_URL,
        "redis_url": REDIS_URL,
        "db_schema": db_schema,
        "target_schemas": [target_schema(db_schema)],
        "credentials": CREDENTIALS,
        "stream_prefix": stream_prefix,
        "service_token": SERVICE_TOKEN,
        "data_root": str(data_root),
    }


@asynccontextmanager
async def asgi_client(app: FastAPI, **kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for `app`, with the app's lifespan running around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            **kwargs,  # type: ignore[arg-type]
        ) as client:
            yield client


def reads_with(key: str) -> dict[str, Any]:
    """Client kwargs sending `key` on every GET that names none (reads need the read scope);
    writes stay as each test sends them, so the tests of a missing key keep testing that."""

    async def add_key(request: httpx.Request) -> None:
        if request.method == "GET" and "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {key}"

    return {"event_hooks": {"request": [add_key]}}


def service_auth() -> dict[str, str]:
    """Headers carrying the test service token."""
    return {"Authorization": f"Bearer {SERVICE_TOKEN}"}


SAMPLES = Path(__file__).resolve().parents[1] / "samples"
