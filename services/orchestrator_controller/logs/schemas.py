"""Bodies of the logs API."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


class LogLine(BaseModel):
    """One line as a service wrote it (shared/logs.py); fields beyond these pass through."""

    model_config = ConfigDict(extra="allow")

    ts: str = Field(description="ISO 8601 UTC, microseconds")
    level: str
    service: str
    logger: str
    message: str
    run_id: str | None = None
    step_id: str | None = None
    attempt: int | None = None
    exc: str | None = Field(None, description="the formatted traceback of an error")


class RunLogs(BaseModel):
    """A run's lines from every service, oldest first."""

    run_id: uuid.UUID
    step: str | None = Field(description="the step filtered on, if any")
    lines: list[LogLine]
    total: int = Field(description="lines found; more than `lines` when truncated")
    truncated: bool = Field(description="only the last `limit` lines are listed")
    files: list[str] = Field(description="the log files read")
