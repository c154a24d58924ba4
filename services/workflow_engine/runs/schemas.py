"""Request and response bodies of the engine API."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ExecuteRequest(BaseModel):
    """One run (`run_id`) or several (`run_ids`, as the controller batches hand-offs)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"run_id": "0f8e6c52-3b1d-4a77-9c2e-5d6f7a8b9c01"},
                {
                    "run_ids": [
                        "0f8e6c52-3b1d-4a77-9c2e-5d6f7a8b9c01",
                        "4c1d2e3f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    ]
                },
            ]
        },
    )

    run_id: uuid.UUID | None = None
    run_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _some_run(self) -> ExecuteRequest:
        if self.run_id is None and not self.run_ids:
            raise ValueError("run_id: give run_id or run_ids")
        return self

    def all_ids(self) -> list[uuid.UUID]:
        """Every run named, once."""
        ids = ([self.run_id] if self.run_id else []) + self.run_ids
        return list(dict.fromkeys(ids))


class ExecuteResponse(BaseModel):
    runs: dict[uuid.UUID, str]
    accepted: bool
