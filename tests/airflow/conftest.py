"""Airflow tests: the client talks to a real controller process on a schema of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.schedules.helpers import private_schema


@pytest.fixture(scope="module")
def env(common_env: dict) -> Iterator[dict]:
    yield from private_schema(common_env)
