"""Agent settings (env prefix AGENT_, plus the shared unprefixed infrastructure variables)."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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
    max_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="largest action body accepted (413 beyond): the engine sends rendered "
        "params, e.g. the file manifests of a large collect",
    )
    target_database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL of the database PostgreSQL merge targets live in "
        "(default: the platform database, DATABASE_URL, in the schemas below)",
    )
    target_schemas: list[str] = Field(
        default_factory=lambda: ["ingest"],
        description="the only schemas a PostgreSQL merge may write to (JSON list; the first is "
        "the default); the platform schema can never be one of them",
    )
    credentials: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the environment variables a spec may name as a credential (JSON: name -> "
        "hosts it may be sent to: host, host:port, CIDR, or '*'; [] for a salt sent nowhere)",
    )
    ledger_claim_s: float = Field(
        300.0,
        description="how long an in-progress idempotency key blocks a repeat before takeover",
    )
    heartbeat_s: float = Field(
        2.0, gt=0, description="how often this agent process records that it is alive"
    )
    dead_after_s: float = Field(
        15.0,
        gt=0,
        description="a process silent this long is dead: its in-progress idempotency claims are "
        "taken over at once instead of after ledger_claim_s (more than a database restart)",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking/registry URI the agent loads its models' champions from "
        "(sqlite:///var/mlflow/mlflow.db on a laptop, http://mlflow:5000 in compose); unset: "
        "the agent decides with its baselines",
    )
    model_refresh_s: float = Field(
        60.0, gt=0, description="how often the agent checks for a new champion (hot swap)"
    )

    @model_validator(mode="after")
    def _targets_apart_from_platform(self) -> AgentSettings:
        for schema in self.target_schemas:
            if not SCHEMA_NAME.match(schema) or schema.startswith("pg_"):
                raise ValueError(f"target_schemas: {schema!r} is not a usable schema name")
        if self.target_database_url is None and self.db_schema in self.target_schemas:
            raise ValueError(
                f"target_schemas: {self.db_schema!r} is the platform schema (DB_SCHEMA); "
                "merges may never write there"
            )
        if not self.target_schemas:
            raise ValueError("target_schemas: name at least one schema")
        return self
