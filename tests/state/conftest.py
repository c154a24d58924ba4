"""What the state tests share: the module's own schema, and a sessionmaker on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL


@pytest.fixture(scope="module")
def schema(module_schema: str) -> str:
    """This module's own schema (tests/conftest.py's `module_schema`): a claim takes any READY
    step of its schema, and other modules may leave runs unfinished in the session's one. A
    module that needs one per test defines its own `schema`."""
    return module_schema


@pytest.fixture
async def db(schema: str) -> AsyncIterator[async_sessionmaker]:
    """A sessionmaker on `schema`."""
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    yield create_sessionmaker(engine)
    await engine.dispose()
