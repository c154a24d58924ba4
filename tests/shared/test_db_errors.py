"""shared/db/errors.py against a real PostgreSQL: what counts as "unavailable for now" (retry,
503) and what as a refused value (the request's fault), by SQLSTATE and exception type."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.db.errors import is_unavailable, refused_value, sqlstate
from shared.errors import register_exception_handlers
from tests.conftest import DATABASE_URL

NOWHERE = make_url(DATABASE_URL).set(port=9).render_as_string(hide_password=False)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(DATABASE_URL)
    yield engine
    await engine.dispose()


async def _error_of(engine: AsyncEngine, sql: str) -> BaseException:
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    return caught.value


async def test_a_server_nobody_listens_on_is_unavailable() -> None:
    engine = create_async_engine(NOWHERE)
    try:
        error = await _error_of(engine, "SELECT 1")
    finally:
        await engine.dispose()
    assert is_unavailable(error)
    assert refused_value(error) is None


async def test_a_connection_the_server_terminated_is_unavailable(engine: AsyncEngine) -> None:
    """pg_terminate_backend: SQLSTATE 57P01 (admin_shutdown), as at a server restart."""
    async with engine.connect() as victim:
        pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(Exception) as caught:
            await victim.execute(text("SELECT 1"))
    assert is_unavailable(caught.value)


async def test_a_query_the_server_refuses_is_not_unavailable(engine: AsyncEngine) -> None:
    error = await _error_of(engine, "SELEC 1")
    assert sqlstate(error) == "42601"  # syntax_error
    assert not is_unavailable(error)
    assert refused_value(error) is None  # not a value: the query itself


async def test_a_value_the_server_refuses_is_named(engine: AsyncEngine) -> None:
    error = await _error_of(engine, "SELECT CAST('lots' AS integer)")
    assert sqlstate(error) == "22P02"  # invalid_text_representation, class 22
    assert not is_unavailable(error)
    assert refused_value(error) == 'invalid input syntax for type integer: "lots"'
    wrapped = RuntimeError("the action failed")
    wrapped.__cause__ = error
    assert refused_value(wrapped) == refused_value(error)  # found along the cause chain


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [(NOWHERE, 503, "database_unavailable"), (DATABASE_URL, 422, "value_refused")],
)
async def test_routes_answer_an_outage_with_a_503_and_a_refused_value_with_a_422(
    url: str, status: int, code: str
) -> None:
    """The exception map (shared/errors.py) asks these two: an outage is a 503 with
    Retry-After, a value the database refuses (here 1/0, SQLSTATE 22012) the request's 422."""
    engine = create_async_engine(url)
    app = FastAPI()
    register_exception_handlers(app)

    @app.get("/read")
    async def read() -> dict[str, int]:
        async with engine.connect() as conn:
            return {"n": (await conn.execute(text("SELECT 1/0"))).scalar_one()}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/read")
    finally:
        await engine.dispose()
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert response.json()["retryable"] is (status == 503)
    assert response.headers.get("Retry-After") == ("1" if status == 503 else None)
