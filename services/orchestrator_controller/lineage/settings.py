"""The controller's lineage settings (mixed into ControllerSettings).

OPENLINEAGE_URL, OPENLINEAGE_API_KEY and OPENLINEAGE_NAMESPACE are read unprefixed, the names
the OpenLineage clients use; the rest take the controller's CONTROLLER_ prefix.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LineageSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    lineage_enabled: bool = Field(
        True, description="emit an OpenLineage run event for each run's start and end"
    )
    openlineage_url: str | None = Field(
        None,
        validation_alias=AliasChoices("openlineage_url", "OPENLINEAGE_URL"),
        description="base URL of an OpenLineage HTTP endpoint (Marquez: events are POSTed to "
        "{url}/api/v1/lineage); unset, the events go to the Redis stream ingestion.lineage",
    )
    openlineage_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("openlineage_api_key", "OPENLINEAGE_API_KEY"),
        description="bearer token sent to OPENLINEAGE_URL",
    )
    openlineage_namespace: str = Field(
        "ingestion-platform",
        min_length=1,
        validation_alias=AliasChoices("openlineage_namespace", "OPENLINEAGE_NAMESPACE"),
        description="job namespace of the events (the job name is the workflow's name)",
    )
    openlineage_timeout_s: float = Field(
        5.0, gt=0, le=120, description="timeout of one POST to OPENLINEAGE_URL"
    )
    lineage_target_database_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "lineage_target_database_url",
            "CONTROLLER_LINEAGE_TARGET_DATABASE_URL",
            "AGENT_TARGET_DATABASE_URL",
        ),
        description="the database PostgreSQL merges write to (the merger's "
        "AGENT_TARGET_DATABASE_URL), which names their output datasets; default DATABASE_URL",
    )
    lineage_retry_s: float = Field(
        5.0, gt=0, description="wait before delivering again an event whose delivery failed"
    )
    lineage_claim_idle_s: float = Field(
        60.0,
        gt=0,
        description="a lifecycle event another controller took but has not delivered for this "
        "long (that replica died) is taken over",
    )
