"""Bodies of the definitions API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class DefinitionOut(BaseModel):
    name: str
    version: int
    kind: str
    source: str
    created_at: datetime
    spec: dict[str, Any]


class DefinitionList(BaseModel):
    items: list[DefinitionOut]
