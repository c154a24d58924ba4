"""SQLAlchemy model of model bindings: which registry entry each platform model is served from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base


class ModelBinding(Base):
    """The registered model and alias a platform model is loaded from, set by a Model resource
    or an admin (`PUT /models/{model}`). Without a row a model is served from its own name at
    the `champion` alias; every service holding the model reads this at each refresh."""

    __tablename__ = "model_bindings"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    registered_model: Mapped[str] = mapped_column(Text)
    alias: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # "api" or "kubernetes"
    resource: Mapped[str | None] = mapped_column(Text)  # <namespace>/<name> of its Model resource
    updated_by: Mapped[str | None] = mapped_column(Text)  # an API key id, or the resource
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
