"""Settings every service shares: database, Redis, service token, data root, agent addresses.

Each service subclasses `CommonSettings` with its own env prefix (CONTROLLER_, ENGINE_, AGENT_).
The infrastructure fields read unprefixed variables (DATABASE_URL, REDIS_URL, ...) because the
same values are handed to every service by compose, Helm and the local launcher.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

AGENT_NAMES: tuple[str, ...] = (
    "data-connector",
    "data-collector",
    "data-converter",
    "data-scheduler",
    "data-merger",
    "data-fetch-retry",
    "data-ml",
    "data-transformer",
)
# The platform's tables live apart from any user data (as DBOS keeps its system schema).
PLATFORM_SCHEMA = "ingestion_platform"
AGENT_PORTS: dict[str, int] = {name: 8101 + i for i, name in enumerate(AGENT_NAMES)}


def default_agent_urls() -> dict[str, str]:
    """Agent base URLs on a laptop: each agent on its own port of 127.0.0.1."""
    return {name: f"http://127.0.0.1:{port}" for name, port in AGENT_PORTS.items()}


def _alias(name: str) -> AliasChoices:
    # Accept both the field name (for code and tests) and the shared env variable.
    return AliasChoices(name.lower(), name)


class CommonSettings(BaseSettings):
    """Infrastructure settings shared by every service."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = Field(
        "development",
        validation_alias=_alias("ENVIRONMENT"),
        description="production refuses default credentials",
    )
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        validation_alias=_alias("DATABASE_URL"),
        description="SQLAlchemy async URL of the platform database",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=_alias("REDIS_URL"),
        description="Redis URL for event streams (redis:// or unix://)",
    )
    db_schema: str = Field(
        PLATFORM_SCHEMA,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        validation_alias=_alias("DB_SCHEMA"),
        description="PostgreSQL schema of the platform's own tables, created by the "
        "migrations; never a merge target (tests and benchmarks isolate by schema)",
    )
    stream_prefix: str = Field(
        "",
        validation_alias=_alias("STREAM_PREFIX"),
        description="prefix for Redis stream names (tests isolate by prefix)",
    )
    service_token: SecretStr = Field(
        SecretStr("dev-service-token"),
        validation_alias=_alias("SERVICE_TOKEN"),
        description="bearer token the engine, controller and agents use between themselves",
    )
    service_token_previous: SecretStr | None = Field(
        None,
        validation_alias=_alias("SERVICE_TOKEN_PREVIOUS"),
        description="a second service token still accepted while a new SERVICE_TOKEN rolls out",
    )

    def service_tokens(self) -> list[str]:
        """The service tokens accepted now (the current one first)."""
        tokens = [self.service_token.get_secret_value()]
        if self.service_token_previous is not None:
            tokens.append(self.service_token_previous.get_secret_value())
        return [t for t in tokens if t]

    data_root: str = Field(
        "./var/data",
        validation_alias=_alias("DATA_ROOT"),
        description="where agents stage data: a local folder or an fsspec URL such as s3://b/p",
    )
    agent_urls: dict[str, str] = Field(
        default_factory=default_agent_urls,
        validation_alias=_alias("AGENT_URLS"),
        description="JSON map of agent name to base URL",
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="largest request body accepted (413 beyond, checked before the body is "
        "read or authenticated); read with the service's prefix, e.g. CONTROLLER_MAX_BODY_BYTES",
    )
    log_level: str = Field("info", validation_alias=_alias("LOG_LEVEL"), description="log level")
    live_settings_poll_s: float = Field(
        10.0,
        gt=0,
        validation_alias=_alias("LIVE_SETTINGS_POLL_S"),
        description="how often an engine or agent reads the log level a Config resource sets "
        "for the whole platform (shared/live_log.py)",
    )
