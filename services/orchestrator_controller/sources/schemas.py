"""Bodies of the source state API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from shared.db.models import STATE_KEY_PATTERN

StateKeyPath = Annotated[
    str,
    Path(
        pattern=STATE_KEY_PATTERN,
        description="the source's state key (a workflow's `state_key`; letters, digits, "
        "_ . : / @ -)",
        examples=["orders-api"],
    ),
]


class SourceStateOut(BaseModel):
    """The cursor committed for one source and the run that committed it."""

    key: str
    cursor: dict[str, Any] = Field(
        description="as collect returned it: {field, value, lag, seen, updated_at}; `seen` "
        "holds the fingerprints of the records at the window's end (the boundary dedup)"
    )
    run_id: str | None = Field(description="the run whose commit step wrote it")
    updated_at: datetime
