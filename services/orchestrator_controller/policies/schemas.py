"""Bodies of GET /orchestrators."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class OrchestratorOut(BaseModel):
    name: str
    description: str
    workflow_kinds: list[str]
    config: dict[str, Any]
    live: dict[str, Any]


class OrchestratorList(BaseModel):
    items: list[OrchestratorOut]
