"""Bodies of the model binding API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from ml.bindings import ALIAS_PATTERN, DEFAULT_ALIAS, REGISTERED_NAME_PATTERN

ModelPath = Annotated[
    str,
    Path(
        max_length=64,
        description="one of the platform's models (GET /models lists them)",
        examples=["format_recognition"],
    ),
]


class ModelBindingIn(BaseModel):
    """Serve the model from this registered model and alias."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"registered_model": "format_recognition_eu", "alias": "staging"}]
        },
    )

    registered_model: str = Field(
        pattern=REGISTERED_NAME_PATTERN, description="the name in the MLflow model registry"
    )
    alias: str = Field(
        DEFAULT_ALIAS, pattern=ALIAS_PATTERN, description="the registry alias services load"
    )


class ModelBindingOut(BaseModel):
    """Where a model is served from, and who said so (`default`: its own name at `champion`)."""

    model: str
    registered_model: str
    alias: str
    source: Literal["default", "api", "kubernetes"]
    resource: str | None = Field(None, description="<namespace>/<name> of its Model resource")
    updated_by: str | None = None
    updated_at: datetime | None = None
