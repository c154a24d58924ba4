"""Bodies of GET /orchestrators."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class OrchestratorOut(BaseModel):
    name: str = Field(description="the manager, e.g. api-manager")
    description: str
    workflow_kinds: list[str] = Field(
        description="the workflow kinds it governs (`*`: the batch manager sees every run)"
    )
    paused: bool = Field(description="true: it admits no new run of its kinds")
    config: dict[str, Any] = Field(description="its configuration in force, field by field")
    sources: dict[str, str] = Field(
        description="where each field of `config` comes from: `default` (the code), "
        "`settings` (CONTROLLER_ORCHESTRATORS) or `resource <name>` (an Orchestrator resource)"
    )
    live: dict[str, Any]


class OrchestratorList(BaseModel):
    items: list[OrchestratorOut]
