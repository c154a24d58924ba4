"""Policy tests run on a schema of their own, emptied before each test (counts are theirs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.schedules.helpers import truncate


@pytest.fixture
async def env(module_env: dict) -> AsyncIterator[dict]:
    await truncate(module_env)
    yield module_env
