"""Policy tests run on a schema of their own, emptied before each test (counts are theirs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.schedules.helpers import private_schema, truncate


@pytest.fixture(scope="module")
def module_env(common_env: dict) -> Iterator[dict]:
    yield from private_schema(common_env)


@pytest.fixture
async def env(module_env: dict) -> AsyncIterator[dict]:
    await truncate(module_env)
    yield module_env
