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


# The body of POST /workflows/definitions is a WorkflowSpec, read by the route itself (JSON or
# YAML), so its example is given with the operation rather than on the shared spec model.
SPEC_EXAMPLE: dict[str, Any] = {
    "name": "orders_export",
    "version": 1,
    "kind": "resilient_fetch",
    "description": "Fetch the nightly orders export, convert it, merge it.",
    "inputs": {
        "url": {"type": "string", "required": True},
        "dataset": {"type": "string", "default": "orders"},
    },
    "steps": [
        {
            "id": "fetch",
            "agent": "data-fetch-retry",
            "action": "fetch",
            "params": {"url": "${inputs.url}", "max_attempts": 5},
        },
        {
            "id": "convert",
            "agent": "data-converter",
            "action": "convert",
            "depends_on": ["fetch"],
            "params": {"files": ["${steps.fetch.output}"], "format": "json"},
        },
        {
            "id": "merge",
            "agent": "data-merger",
            "action": "merge",
            "depends_on": ["convert"],
            "params": {
                "batches": "${steps.convert.output}",
                "dataset": "${inputs.dataset}",
                "write_disposition": "merge",
                "primary_key": ["order_id"],
            },
        },
    ],
}
