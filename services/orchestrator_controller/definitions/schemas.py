"""Bodies of the definitions API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class DefinitionSummary(BaseModel):
    """One version of a workflow as listed: what it is, without its whole spec by default."""

    name: str
    version: int
    kind: str
    source: str = Field(description="api, builtin (workflows/*.yaml) or kubernetes")
    description: str = Field(description="its first 500 characters (all of it in the spec)")
    steps: int = Field(description="how many steps the spec has")
    created_at: datetime
    archived: bool = Field(description="archived versions take no new runs")
    archived_at: datetime | None
    spec: dict[str, Any] | None = Field(
        None, description="the whole spec; listed only with ?include_spec=true"
    )


class DefinitionOut(DefinitionSummary):
    """A definition with its spec (the answer to registering one)."""

    spec: dict[str, Any]


class DefinitionList(BaseModel):
    items: list[DefinitionSummary]
