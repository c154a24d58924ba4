"""Bodies of the runs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.spec.models import MAX_INT32, WorkflowSpec


class CoordinateRequest(BaseModel):
    """Start a run of a registered workflow (`workflow`, optional `version`) or of `spec`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"workflow": "test", "inputs": {"dataset": "test_orders"}, "priority": 10},
                {
                    "spec": {
                        "name": "inline",
                        "inputs": {"n": {"type": "integer", "required": True}},
                        "steps": [{"id": "a", "agent": "data-connector", "action": "noop"}],
                    },
                    "inputs": {"n": 1},
                },
            ]
        },
    )

    workflow: str | None = Field(None, description="name of a registered workflow")
    version: int | None = Field(
        None, ge=1, le=MAX_INT32, description="its version; newest when omitted"
    )
    spec: WorkflowSpec | None = Field(None, description="an inline spec instead of a name")
    inputs: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-100, le=100, description="higher runs first")

    @model_validator(mode="after")
    def _one_source(self) -> CoordinateRequest:
        if (self.workflow is None) == (self.spec is None):
            raise ValueError("workflow: give exactly one of `workflow` (a name) or `spec`")
        if self.spec is not None and self.version is not None:
            raise ValueError("version: only with `workflow`; an inline spec carries its own")
        return self


class CoordinateResponse(BaseModel):
    run_id: uuid.UUID
    status: str
    workflow: str
    version: int
    status_url: str
    created: bool
    retry_of: uuid.UUID | None = Field(
        None, description="for a retry: the failed run whose succeeded steps it reuses"
    )

    @classmethod
    def of(cls, run: Any, *, created: bool) -> CoordinateResponse:
        """The answer for an accepted run (a WorkflowRun row)."""
        return cls(
            run_id=run.id,
            status=run.status,
            workflow=run.workflow_name,
            version=run.workflow_version,
            status_url=f"/workflows/{run.id}",
            created=created,
            retry_of=run.retry_of,
        )


class CancelResponse(BaseModel):
    run_id: uuid.UUID
    status: str
    cancel_requested: bool


class StepOut(BaseModel):
    step_id: str
    role: str
    agent: str
    action: str
    status: str
    status_reason: str | None
    attempts: int
    max_attempts: int
    depends_on: list[str]
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    output: Any
    error: dict[str, Any] | None
    attempt_log: list[Any]
    map_items: dict[str, int] | None = None


class RunSummary(BaseModel):
    run_id: uuid.UUID
    workflow: str
    version: int
    kind: str
    status: str
    status_reason: str | None
    priority: int
    submitted_by: str | None = Field(
        description="the API key's id, or schedule:<id> for a scheduled fire; null for runs "
        "recorded before submitters were"
    )
    retry_of: uuid.UUID | None = Field(
        None, description="the failed run this one retries, reusing its succeeded steps"
    )
    failed_step: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None


class RunDetail(RunSummary):
    inputs: dict[str, Any]
    trace_id: str
    cancel_requested: bool
    steps: list[StepOut]


class RunPage(BaseModel):
    items: list[RunSummary]
    total: int
    limit: int
    offset: int
