"""Agent settings (env prefix AGENT_, plus the shared unprefixed infrastructure variables)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class AgentSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_", extra="ignore", populate_by_name=True)

    allowed_roots: list[str] = Field(
        default_factory=lambda: ["./var/data", "./samples"],
        description="folders file sources may read from (JSON list); no path escapes them",
    )
    allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="hosts or CIDRs in private ranges that fetches may reach (JSON list)",
    )
    ledger_claim_s: float = Field(
        300.0,
        description="how long an in-progress idempotency key blocks a repeat before takeover",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"),
        description="MLflow registry the agent loads its model from (optional)",
    )
