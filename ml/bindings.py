"""Which registry entry a platform model is served from: its own name at `champion`, unless a
Model resource or an admin bound it to another registered model or alias (`model_bindings`).

The five model names live here, light to import: the controller checks names against them
without importing any training code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

MODEL_NAMES = (
    "connection_optimization",
    "format_recognition",
    "retry_strategy",
    "scheduling_intelligence",
    "source_detection",
)
DEFAULT_ALIAS = "champion"
# MLflow aliases: what the Model resource's schema allows too.
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
REGISTERED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}$"


@dataclass(frozen=True)
class Binding:
    registered_model: str
    alias: str
    # Who chose it, not where it points: a slot does not reload when only this changes.
    source: Literal["default", "api", "kubernetes"] = field(default="default", compare=False)

    @classmethod
    def default(cls, model: str) -> Binding:
        return cls(model, DEFAULT_ALIAS)

    def is_default_for(self, model: str) -> bool:
        return (self.registered_model, self.alias) == (model, DEFAULT_ALIAS)


BindingReader = Callable[[], Awaitable[Binding]]

_READ = text("SELECT registered_model, alias, source FROM model_bindings WHERE model = :model")


def database_binding(sessionmaker: Callable[[], async_sessionmaker], model: str) -> BindingReader:
    """A reader of `model`'s binding from the platform database (`sessionmaker()` is called at
    each read: services create theirs when they start, after the slot is built)."""

    async def read() -> Binding:
        async with sessionmaker()() as session:
            row = (await session.execute(_READ, {"model": model})).one_or_none()
        if row is None:
            return Binding.default(model)
        return Binding(row.registered_model, row.alias, row.source)

    return read
