"""How much of its source a collect read: what the source announced against what was read.

The collector puts these fields on every collect output, beside `files`; the merger's quality
step takes them back as its `collected` param and checks `read` against `announced`. One model
for both ends, so the fields a workflow passes from one step to the other cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

Outcome = Literal["complete", "partial"]


class Completeness(BaseModel):
    """The counts of one collect and whether it read everything the source had."""

    model_config = ConfigDict(extra="forbid")

    announced: int | None = Field(
        None,
        ge=0,
        description="the record count the source announced (REST: a total header or body "
        "field), or null when it announced none",
    )
    announced_by: str | None = Field(
        None,
        description="where the announced count came from: `header:<Name>` or the body's dotted "
        "path (a valid `pagination.total_path`)",
    )
    read: int = Field(
        ge=0,
        description="what was read from the source: REST records on every page (before "
        "incremental dedup), PostgreSQL rows, files copied, stream entries",
    )
    outcome: Outcome = Field(
        "complete",
        description="complete: the source had nothing more; partial: the collect stopped at "
        "`cap`, as the user allowed",
    )
    cap: str | None = Field(
        None, description="the limit a partial collect stopped at, e.g. `max_pages=5`"
    )

    @computed_field(description="true exactly when outcome is complete")  # type: ignore[prop-decorator]
    @property
    def complete(self) -> bool:
        return self.outcome == "complete"

    def fields(self) -> dict[str, Any]:
        """The fields to put on a collect output."""
        return self.model_dump()
