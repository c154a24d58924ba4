"""The migrations build what the ORM models declare: a schema migrated to head, compared with
`Base.metadata` by alembic's autogenerate, differs in nothing (a table, column, index or
constraint declared on one side only fails here, before a deploy finds it)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

import shared.db
from shared.db.models import Base
from tests.conftest import DATABASE_URL, fresh_schema


@pytest.fixture
def schema() -> Iterator[str]:
    yield from fresh_schema()


def _every_model_module() -> None:
    # Models live in several modules (models.py, dataset_load_models.py, ...): all must be in
    # the metadata, or a table of the migrations would look like one the models dropped.
    for module in pkgutil.iter_modules(shared.db.__path__):
        if module.name.endswith("models"):
            importlib.import_module(f"shared.db.{module.name}")


async def test_a_migrated_schema_is_what_the_models_declare(schema: str) -> None:
    _every_model_module()
    engine = create_async_engine(
        DATABASE_URL, connect_args={"server_settings": {"search_path": schema}}
    )
    try:
        async with engine.connect() as conn:

            def differences(sync: Any) -> list[Any]:
                return list(compare_metadata(MigrationContext.configure(sync), Base.metadata))

            found = await conn.run_sync(differences)
    finally:
        await engine.dispose()
    assert found == []
