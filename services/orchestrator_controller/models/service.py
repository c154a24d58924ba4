"""Reading and writing model bindings (`model_bindings`). Functions only `flush()`: the caller
owns the transaction. Services pick a change up at their next model refresh."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ml.bindings import DEFAULT_ALIAS, MODEL_NAMES
from services.orchestrator_controller.models.schemas import ModelBindingIn, ModelBindingOut
from shared.db.models import ModelBinding
from shared.errors import Conflict, NotFound


def known(model: str) -> str:
    """`model` if the platform has it; 404 otherwise."""
    if model not in MODEL_NAMES:
        raise NotFound(
            f"no model {model!r}; models: {', '.join(MODEL_NAMES)}", code="unknown_model"
        )
    return model


def describe(model: str, row: ModelBinding | None) -> ModelBindingOut:
    if row is None:
        return ModelBindingOut(
            model=model, registered_model=model, alias=DEFAULT_ALIAS, source="default"
        )
    return ModelBindingOut(
        model=model,
        registered_model=row.registered_model,
        alias=row.alias,
        source=row.source,  # written only as "api" or "kubernetes"
        resource=row.resource,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def list_all(session: AsyncSession) -> list[ModelBindingOut]:
    rows = {row.model: row for row in (await session.scalars(select(ModelBinding))).all()}
    return [describe(model, rows.get(model)) for model in MODEL_NAMES]


async def find(session: AsyncSession, model: str) -> ModelBindingOut:
    return describe(known(model), await session.get(ModelBinding, model))


def _owned_by_resource(row: ModelBinding | None, model: str) -> None:
    # The resource would put its own binding back at its next reconcile: change it there.
    if row is not None and row.source == "kubernetes":
        raise Conflict(
            f"{model} is bound by the Model resource {row.resource}: change the resource",
            code="bound_by_resource",
        )


async def bind_by_api(
    session: AsyncSession, model: str, body: ModelBindingIn, *, by: str | None
) -> ModelBindingOut:
    """Bind `model` (409 when a Model resource owns its binding)."""
    known(model)
    row = await session.get(ModelBinding, model, with_for_update=True)
    _owned_by_resource(row, model)
    if row is None:
        row = ModelBinding(model=model)
        session.add(row)
    row.registered_model, row.alias = body.registered_model, body.alias
    row.source, row.resource, row.updated_by = "api", None, by
    await session.flush()
    await session.refresh(row)
    return describe(model, row)


async def unbind_by_api(session: AsyncSession, model: str) -> None:
    """Serve `model` from its own name at `champion` again (409 when a resource owns it)."""
    known(model)
    row = await session.get(ModelBinding, model, with_for_update=True)
    _owned_by_resource(row, model)
    if row is not None:
        await session.delete(row)
        await session.flush()
