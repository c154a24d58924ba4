"""Request and response bodies of the engine API."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: uuid.UUID


class ExecuteResponse(BaseModel):
    run_id: uuid.UUID
    status: str
    accepted: bool
