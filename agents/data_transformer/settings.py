"""data-transformer settings: the limits a user's SQL runs under (env prefix AGENT_)."""

from __future__ import annotations

from pydantic import Field

from agents.base.settings import AgentSettings


class TransformerSettings(AgentSettings):
    transform_max_sql_chars: int = Field(
        100_000, ge=16, description="longest `sql` accepted (a 422 naming `sql` beyond)"
    )
    transform_max_rows: int = Field(
        10_000_000,
        ge=1,
        description="most rows a transform may write (a 413 naming `sql` beyond; nothing is "
        "published)",
    )
    transform_memory_limit: str = Field(
        "1GB",
        pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory_limit for one transform (a 413 naming `sql` beyond)",
    )
    transform_threads: int = Field(2, ge=1, le=64, description="DuckDB threads per transform")
    transform_timeout_s: float = Field(
        300.0, gt=0, description="a query running longer is interrupted (a 422 naming `sql`)"
    )
    transform_concurrency: int = Field(
        2, ge=1, le=64, description="transforms running at once in one process"
    )


def transformer_settings(settings: AgentSettings | None) -> TransformerSettings:
    """`settings` as TransformerSettings (tests and the launcher may hand plain AgentSettings)."""
    if settings is None:
        return TransformerSettings()
    if isinstance(settings, TransformerSettings):
        return settings
    return TransformerSettings.model_validate(settings.model_dump())
