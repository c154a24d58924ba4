"""Engine and session factories; the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from shared.settings import CommonSettings


def create_engine(
    settings: CommonSettings, *, pool_size: int = 10, pre_ping: bool = True
) -> AsyncEngine:
    """An async engine; a configured schema becomes the connection's search_path.

    `pre_ping` costs a round trip per checkout; a caller that retries on a lost connection
    anyway (the engine's loops) can do without: the first failure after a database restart
    invalidates the whole pool.
    """
    server_settings = {"application_name": "ingestion-platform", "search_path": settings.db_schema}
    return create_async_engine(
        settings.database_url,
        pool_pre_ping=pre_ping,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": server_settings},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def asyncpg_dsn(url: str) -> str:
    """The plain libpq URL asyncpg.connect() expects (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
