"""Bodies of the agent registration API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.agent_registry import AGENT_NAME_PATTERN

# The name of an environment variable, as the built-in agents take credentials (never a value).
CREDENTIAL_PATTERN = r"^[A-Z][A-Z0-9_]{0,127}$"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_CONCURRENCY = 16

AgentPath = Annotated[
    str,
    Path(
        max_length=63,
        description="an agent's name (GET /agents lists them)",
        examples=["data-quality"],
    ),
]
CredentialName = Annotated[str, StringConstraints(pattern=CREDENTIAL_PATTERN)]


class AgentIn(BaseModel):
    """Register an agent (or change one registered through the API) under `name`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "data-quality",
                    "base_url": "http://data-quality.quality-team.svc:8080",
                    "timeout_s": 120,
                    "max_concurrency": 8,
                    "credentials": ["QUALITY_API_TOKEN"],
                }
            ]
        },
    )

    name: str = Field(
        pattern=AGENT_NAME_PATTERN,
        description="the name steps use in `agent:`; not one of the built-in agents",
    )
    base_url: str = Field(
        min_length=1,
        max_length=2048,
        description="where the agent answers `GET /api/v1/actions` and `POST /api/v1/{action}` "
        "(http or https, no credentials, query or fragment)",
    )
    timeout_s: float = Field(
        DEFAULT_TIMEOUT_S,
        gt=0,
        le=86400,
        description="the longest one call may take, whatever a step's timeout_s says",
    )
    max_concurrency: int = Field(
        DEFAULT_MAX_CONCURRENCY,
        ge=1,
        le=10000,
        description="calls in flight at once to this agent, per engine replica",
    )
    credentials: list[CredentialName] = Field(
        default_factory=list,
        max_length=64,
        description="names of the credentials (environment variables) steps may hand this "
        "agent by name; the platform never sends their values",
    )


class AgentOut(BaseModel):
    """An agent: built in (its address from AGENT_URLS) or registered (`api` or `kubernetes`)."""

    name: str
    source: Literal["builtin", "api", "kubernetes"]
    base_url: str | None = Field(
        description="null for a built-in agent this install has no URL for"
    )
    actions: list[str] = Field(description="what steps may call; read from the agent itself")
    timeout_s: float | None = Field(None, description="registered agents only")
    max_concurrency: int | None = Field(None, description="registered agents only")
    credentials: list[str] = Field(default_factory=list)
    resource: str | None = Field(None, description="<namespace>/<name> of its Agent resource")
    updated_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    health: str = Field("unknown", description="the health monitor's last view of it")
