"""Model resources: each binds one of the platform's models to a registered model and alias.

The Model kind of the shared informer (kubernetes/informer.py): at each change it makes
`model_bindings` say what the namespace's Model resources say (a resource takes a model over
from an API binding; a deleted resource gives it back to its default), and writes each
resource's status: phase, the version its alias points at (when the controller can read the
registry, read again at each resync) and a Ready condition. The services pick a changed
binding up at their next model refresh.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from ml.bindings import ALIAS_PATTERN, DEFAULT_ALIAS, MODEL_NAMES, REGISTERED_NAME_PATTERN
from services.orchestrator_controller.kubernetes.informer import ResourceView
from services.orchestrator_controller.kubernetes.resources import (
    merge_conditions,
    oldest_per,
    ready_condition,
    status_differs,
)

log = logging.getLogger(__name__)

PLURAL = "models"
# The version `registered@alias` points at, or None when the alias is unset; raises when the
# registry cannot say.
ResolveVersion = Callable[[str, str], Awaitable[str | None]]
# (phase, Ready, reason, message, version) a binding reports.
_Bound = tuple[str, bool | None, str, str, str | None]

_BIND = text(
    """
INSERT INTO model_bindings (model, registered_model, alias, source, resource, updated_by)
VALUES (:model, :registered, :alias, 'kubernetes', :resource, :resource)
ON CONFLICT (model) DO UPDATE SET
    registered_model = EXCLUDED.registered_model, alias = EXCLUDED.alias,
    source = 'kubernetes', resource = EXCLUDED.resource, updated_by = EXCLUDED.updated_by,
    updated_at = now()
WHERE (model_bindings.registered_model, model_bindings.alias, model_bindings.source,
       model_bindings.resource) IS DISTINCT FROM
      (EXCLUDED.registered_model, EXCLUDED.alias, 'kubernetes', EXCLUDED.resource)
"""
)
_RELEASE = text(
    "DELETE FROM model_bindings WHERE source = 'kubernetes' AND NOT (model = ANY(:kept))"
)


@dataclass(frozen=True)
class ModelResource:
    namespace: str
    name: str
    created: str
    model: str
    registered_model: str
    alias: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_model_resource(resource: Mapping[str, Any]) -> ModelResource | str:
    """The binding a Model resource asks for, or why it cannot be honoured."""
    metadata = resource.get("metadata") or {}
    spec = resource.get("spec") or {}
    model, registered = spec.get("model"), spec.get("registeredModelName")
    alias = spec.get("alias") or DEFAULT_ALIAS
    if model not in MODEL_NAMES:
        return f"spec.model: {model!r} is not one of {', '.join(MODEL_NAMES)}"
    if not isinstance(registered, str) or not re.match(REGISTERED_NAME_PATTERN, registered):
        return f"spec.registeredModelName: {registered!r} is not a registered model name"
    if not isinstance(alias, str) or not re.match(ALIAS_PATTERN, alias):
        return f"spec.alias: {alias!r} is not a registry alias"
    return ModelResource(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
        model=str(model),
        registered_model=registered,
        alias=alias,
    )


class ModelResources:
    """The Model kind: keeps `model_bindings` in step with the Model resources of a namespace.

    Each change recomputes the whole (which resource binds which model depends on the others)
    and writes the status of every resource whose status changed. The version a binding's alias
    points at is asked of the registry again for the resource reconciled (so at every resync)
    and for one binding a model anew; the others reuse what was read.
    """

    plural = PLURAL
    kind = "Model"

    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        *,
        resolve_version: ResolveVersion | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessionmaker = sessionmaker
        self._resolve_version = resolve_version
        self._clock = clock
        self._bound: dict[str, tuple[ModelResource, _Bound]] = {}  # ref -> what was read
        self.bindings: dict[str, str] = {}  # model -> ref of the resource binding it

    async def reconcile(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Bind as the resources say, reading the reconciled one's version afresh."""
        found = parse_model_resource(resource)
        if isinstance(found, ModelResource):
            self._bound.pop(found.ref, None)
        await self._sync(view)

    async def delete(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Bind as the remaining resources say (the model goes back to its default, or to
        the next oldest resource naming it)."""
        await self._sync(view)

    async def _sync(self, view: ResourceView) -> None:
        items = view.items()
        parsed = [(item, parse_model_resource(item)) for item in items]
        # Two resources naming one model: the older one binds it, the other says so.
        candidates = [p for _, p in parsed if isinstance(p, ModelResource)]
        winners = oldest_per(candidates, lambda c: c.model)
        async with self._sessionmaker() as session, session.begin():
            for bound in winners.values():
                await session.execute(
                    _BIND,
                    {
                        "model": bound.model,
                        "registered": bound.registered_model,
                        "alias": bound.alias,
                        "resource": bound.ref,
                    },
                )
            await session.execute(_RELEASE, {"kept": list(winners)})
        self.bindings = {model: bound.ref for model, bound in winners.items()}
        refs = {bound.ref for bound in winners.values()}
        self._bound = {ref: read for ref, read in self._bound.items() if ref in refs}
        for item, found in parsed:
            await self._report(item, found, winners, view)

    async def _report(
        self,
        item: dict[str, Any],
        found: ModelResource | str,
        winners: dict[str, ModelResource],
        view: ResourceView,
    ) -> None:
        metadata = item.get("metadata") or {}
        generation = int(metadata.get("generation") or 1)
        version: str | None = None
        ready: bool | None
        if isinstance(found, str):
            phase, ready, reason, message = "Failed", False, "InvalidSpec", found
        elif winners[found.model].ref != found.ref:
            phase, ready, reason = "Failed", False, "Conflict"
            message = f"{found.model} is bound by the older Model {winners[found.model].ref}"
        else:
            phase, ready, reason, message, version = await self._bound_to(found)
        condition = ready_condition(
            status=ready, reason=reason, message=message, generation=generation, now=self._clock()
        )
        status = {
            "observedGeneration": generation,
            "phase": phase,
            # None removes a version written earlier (a merge patch): it would no longer be true.
            "registeredVersion": version,
            "conditions": merge_conditions((item.get("status") or {}).get("conditions"), condition),
        }
        if status_differs(item, status):
            await view.write_status(item, status)

    async def _bound_to(self, found: ModelResource) -> _Bound:
        """What the resource binding its model reports, read once per reconcile of it."""
        read = self._bound.get(found.ref)
        if read is None or read[0] != found:
            read = (found, await self._read(found))
            self._bound[found.ref] = read
        return read[1]

    async def _read(self, found: ModelResource) -> _Bound:
        """(phase, Ready, reason, message, version) of the resource that binds its model."""
        target = f"{found.registered_model}@{found.alias}"
        if self._resolve_version is None:
            message = f"services load {target} (no registry configured here to check it)"
            return "Registered", True, "Bound", message, None
        try:
            version = await self._resolve_version(found.registered_model, found.alias)
        except Exception as exc:  # the registry away: say so, the binding stands
            message = f"services load {target}; the registry cannot say which version: {exc}"
            return "Pending", None, "RegistryUnavailable", message, None
        if version is None:
            message = f"{target} does not exist yet: services serve their baseline until it does"
            return "Pending", False, "AliasNotSet", message, None
        return "Registered", True, "Bound", f"services load {target} (version {version})", version


def registry_version_resolver(tracking_uri: str) -> ResolveVersion:
    """Resolve `registered@alias` through MLflow (imported only where Model resources are
    watched and a registry is configured)."""

    async def resolve(registered: str, alias: str) -> str | None:
        from ml import registry

        def lookup() -> str | None:
            try:
                return registry.alias_version(registered, alias, uri=tracking_uri)
            except registry.RegistryUnreachable:
                raise
            except registry.ModelUnavailable:
                return None

        return await asyncio.to_thread(lookup)

    return resolve
