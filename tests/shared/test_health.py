"""shared/health.py: the one GET /health, against a real PostgreSQL and Redis (and servers
that are not there): each check's state adds up to healthy, degraded (200) or unhealthy (503)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from shared.db.session import create_engine, create_sessionmaker
from shared.health import mount_health
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, REDIS_URL

NO_DATABASE = make_url(DATABASE_URL).set(port=9).render_as_string(hide_password=False)
NO_REDIS = "redis://127.0.0.1:9/0"


async def _health(
    database_url: str, redis_url: str, parts: dict[str, str] | None = None
) -> httpx.Response:
    app = FastAPI()
    engine = create_engine(CommonSettings(database_url=database_url))
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.redis = aioredis.from_url(redis_url, socket_connect_timeout=2)

    async def other_parts(_: FastAPI) -> dict[str, str]:
        return parts or {}

    mount_health(app, "svc", parts=other_parts if parts is not None else None, worker_id="w1")
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/health")
    finally:
        await app.state.redis.aclose()
        await engine.dispose()


@pytest.fixture(autouse=True)
async def _redis_is_up() -> AsyncIterator[None]:
    client = aioredis.from_url(REDIS_URL)
    assert await client.ping()
    yield
    await client.aclose()


async def test_everything_up_is_healthy() -> None:
    response = await _health(DATABASE_URL, REDIS_URL)
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "service": "svc",
        "worker_id": "w1",
        "checks": {"database": "ok", "redis": "ok"},
    }


async def test_redis_down_is_degraded_not_unhealthy() -> None:
    response = await _health(DATABASE_URL, NO_REDIS)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("down: ")


async def test_the_database_down_is_unhealthy_with_a_503() -> None:
    response = await _health(NO_DATABASE, REDIS_URL, parts={"engine": "ok"})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["checks"]["database"].startswith("down: ")
    assert body["checks"]["engine"] == "ok"  # the other checks still run and are shown


async def test_a_part_not_ok_makes_it_degraded() -> None:
    response = await _health(DATABASE_URL, REDIS_URL, parts={"engine": "down: unreachable"})
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["engine"] == "down: unreachable"
