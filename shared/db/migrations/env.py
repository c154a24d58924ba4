"""Alembic environment: async engine, optional schema (tests isolate by schema)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.models import Base
from shared.db.session import create_engine
from shared.settings import PLATFORM_SCHEMA, CommonSettings

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
        await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.db_schema}"'))
        await connection.commit()
        # Serialise concurrent migrators (several replicas starting at once).
        await connection.execute(text("SELECT pg_advisory_lock(72001)"))
        if settings.db_schema == PLATFORM_SCHEMA:
            await _move_out_of_public(connection, settings.db_schema)
        await connection.run_sync(_run, settings.db_schema)
        await connection.commit()
        await connection.execute(text("SELECT pg_advisory_unlock(72001)"))
    await engine.dispose()


async def _move_out_of_public(connection: AsyncConnection, schema: str) -> None:
    """Move an install made before the platform schema existed out of `public`, once.

    Those versions kept the platform's tables in `public`, where a merge could reach them.
    ALTER TABLE ... SET SCHEMA keeps every row, index, sequence and constraint; it runs only
    when the platform schema is still empty and `public` holds a migrated platform.
    """
    present = await connection.execute(
        text(
            "SELECT to_regclass(:own) IS NULL AND to_regclass('public.alembic_version') "
            "IS NOT NULL AND to_regclass('public.workflow_runs') IS NOT NULL"
        ),
        {"own": f'"{schema}".alembic_version'},
    )
    if not present.scalar():
        return
    names = [*target_metadata.tables, "alembic_version"]
    found = await connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(:n)"),
        {"n": names},
    )
    moved = [row[0] for row in found]
    for table in moved:
        await connection.execute(text(f'ALTER TABLE public."{table}" SET SCHEMA "{schema}"'))
    await connection.commit()
    print(f"moved {len(moved)} platform tables from public into {schema}")


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `python -m shared.db.migrate`")
asyncio.run(_run_async())
