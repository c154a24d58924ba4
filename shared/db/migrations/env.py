"""Alembic environment: async engine, optional schema (tests isolate by schema)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import shared.db.schedule_models  # noqa: F401
import shared.db.source_state_models  # noqa: F401
from shared.db.models import Base
from shared.db.session import create_engine
from shared.settings import CommonSettings

config = context.config
target_metadata = Base.metadata


def _settings() -> CommonSettings:
    given = config.attributes.get("settings")
    return given if isinstance(given, CommonSettings) else CommonSettings()


def _run(connection: Connection, schema: str | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    settings = _settings()
    engine = create_engine(settings, pool_size=1)
    async with engine.connect() as connection:
        if settings.db_schema:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.db_schema}"'))
            await connection.commit()
        # Serialise concurrent migrators (several replicas starting at once).
        await connection.execute(text("SELECT pg_advisory_lock(72001)"))
        await connection.run_sync(_run, settings.db_schema)
        await connection.commit()
        await connection.execute(text("SELECT pg_advisory_unlock(72001)"))
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `python -m shared.db.migrate`")
asyncio.run(_run_async())
