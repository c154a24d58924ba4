"""Orchestrator resources: each configures one of the five managers, live.

The Orchestrator kind of the shared informer (kubernetes/informer.py): at each change (a
watch event, so within a moment of the edit) it puts in force what the namespace's
Orchestrator resources say, by swapping the configuration the controller's `Policies` holds
(the one `/coordinate`, the admission loop, the ticker and `GET /orchestrators` read), so the
next admission decision follows it.

Precedence, field by field: the code's defaults < `CONTROLLER_ORCHESTRATORS` < the resource
of that manager's type. A field the resource leaves out keeps the settings' value (or the
default); a deleted resource gives its manager back the settings' values.

At most one resource per type: the oldest (creationTimestamp, then name) configures it, the
others say Conflict. The merged configuration is validated whole (`OrchestratorsConfig`: a
kind claimed by two managers, say); a resource that would make it invalid is not applied (its
manager keeps what the settings give it) and says InvalidSpec with the reason, while the
others still apply. When the API server cannot be read, the configuration last applied stays.

Each resource's status: a Ready condition (Applied, Conflict or InvalidSpec), `inForce` (its
manager's configuration in force, in the resource's spelling) and `sources` (where each of
those fields comes from).

With several controller replicas its informer runs on every one of them, not on the leader
only (kubernetes/leader.py): each replica admits runs with its own `Policies`, so each must put
the resources in force in its own memory. Only the status is shared, so only the leader writes
it: the informer's `is_leader` says whether this replica does (every replica computes the same
status from the same resources; the others would only race it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from services.orchestrator_controller.kubernetes.informer import ResourceView
from services.orchestrator_controller.kubernetes.resources import (
    merge_conditions,
    oldest_per,
    ready_condition,
    status_differs,
)
from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.resource import (
    TYPE_OF_MANAGER,
    InvalidOrchestratorSpec,
    resource_field,
    section_to_spec,
    spec_overrides,
    validation_message,
)
from services.orchestrator_controller.policies.service import (
    Policies,
    Sources,
    settings_sources,
)

log = logging.getLogger(__name__)

PLURAL = "orchestrators"


@dataclass(frozen=True)
class OrchestratorResource:
    name: str
    created: str
    manager: str
    overrides: dict[str, Any] = field(default_factory=dict)


def parse_orchestrator_resource(resource: Mapping[str, Any]) -> OrchestratorResource | str:
    """The manager and fields a resource configures, or why it cannot."""
    metadata = resource.get("metadata") or {}
    spec = resource.get("spec")
    if not isinstance(spec, Mapping):
        return "spec: missing or not an object"
    try:
        manager, overrides = spec_overrides(spec)
    except InvalidOrchestratorSpec as exc:
        return str(exc)
    return OrchestratorResource(
        name=str(metadata.get("name") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
        manager=manager,
        overrides=overrides,
    )


def merged(
    base: OrchestratorsConfig, resources: Mapping[str, OrchestratorResource]
) -> OrchestratorsConfig:
    """`base` with each manager's fields replaced by those its resource sets (raises
    ValidationError when the whole does not hold together)."""
    sections = base.model_dump()
    for manager, resource in resources.items():
        sections[manager] = {**sections[manager], **resource.overrides}
    return OrchestratorsConfig.model_validate(sections)


class OrchestratorResources:
    """The Orchestrator kind: keeps the live `Policies` configured as the Orchestrator
    resources of one namespace say.

    `base` is the configuration from settings (CONTROLLER_ORCHESTRATORS over the defaults).
    Each change recomputes the whole: one resource's validity depends on the others'.
    """

    plural = PLURAL
    kind = "Orchestrator"

    def __init__(
        self,
        policies: Policies,
        base: OrchestratorsConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._policies = policies
        self._base = base
        self._base_sources = settings_sources(base)
        self._clock = clock
        self.applied: dict[str, str] = {}  # manager -> name of the resource configuring it

    async def reconcile(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Put in force what the resources say."""
        await self._sync(view)

    async def delete(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Put in force what the remaining resources say (its manager back to the settings)."""
        await self._sync(view)

    async def _sync(self, view: ResourceView) -> None:
        parsed = [(item, parse_orchestrator_resource(item)) for item in view.items()]
        candidates = [p for _, p in parsed if isinstance(p, OrchestratorResource)]
        winners = oldest_per(candidates, lambda c: c.manager)
        applied, refused = self._fit(winners)
        config = merged(self._base, applied)
        sources = self._sources(applied)
        self._policies.apply(config, sources)
        self.applied = {manager: resource.name for manager, resource in applied.items()}
        if not view.reports:  # a follower: the leader reports
            return
        for item, found in parsed:
            try:
                await self._report(item, found, winners, applied, refused, config, sources, view)
            except ApiException as exc:
                log.warning(
                    "writing the status of Orchestrator %s failed: %s %s",
                    (item.get("metadata") or {}).get("name"),
                    exc.status,
                    exc.reason,
                )

    def _fit(
        self, winners: dict[str, OrchestratorResource]
    ) -> tuple[dict[str, OrchestratorResource], dict[str, str]]:
        """The winners that can apply together, and why each other one cannot.

        All together if the whole is valid; else, oldest first, each one that keeps the whole
        valid (again until nothing more fits: one may fit only once another applied)."""
        try:
            merged(self._base, winners)
            return dict(winners), {}
        except ValidationError:
            pass
        pending = sorted(winners.values(), key=lambda r: (r.created, r.name))
        applied: dict[str, OrchestratorResource] = {}
        refused: dict[str, str] = {}
        progress = True
        while progress and pending:
            progress = False
            for resource in list(pending):
                trial = {**applied, resource.manager: resource}
                try:
                    merged(self._base, trial)
                except ValidationError as exc:
                    refused[resource.manager] = validation_message(exc)
                    continue
                applied = trial
                refused.pop(resource.manager, None)
                pending.remove(resource)
                progress = True
        return applied, refused

    def _sources(self, applied: Mapping[str, OrchestratorResource]) -> Sources:
        sources = {manager: dict(fields) for manager, fields in self._base_sources.items()}
        for manager, resource in applied.items():
            for name in resource.overrides:
                sources[manager][name] = f"resource {resource.name}"
        return sources

    async def _report(
        self,
        item: dict[str, Any],
        found: OrchestratorResource | str,
        winners: Mapping[str, OrchestratorResource],
        applied: Mapping[str, OrchestratorResource],
        refused: Mapping[str, str],
        config: OrchestratorsConfig,
        sources: Sources,
        view: ResourceView,
    ) -> None:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name"))
        generation = int(metadata.get("generation") or 1)
        manager: str | None = None
        if isinstance(found, str):
            ready, reason, message = False, "InvalidSpec", found
            spec = item.get("spec")
            kind = spec.get("type") if isinstance(spec, Mapping) else None
            manager = next((m for m, t in TYPE_OF_MANAGER.items() if t == kind), None)
        else:
            manager = found.manager
            kind = TYPE_OF_MANAGER[manager]
            if winners[manager].name != found.name:
                ready, reason = False, "Conflict"
                message = (
                    f"the {kind} manager is configured by the older Orchestrator "
                    f"{winners[manager].name}; this one is not applied"
                )
            elif manager in applied:
                ready, reason = True, "Applied"
                fields = ", ".join(resource_field(n) for n in found.overrides) or "no field"
                message = (
                    f"the {kind} manager is configured by this resource ({fields}); other "
                    "fields keep CONTROLLER_ORCHESTRATORS or the defaults"
                )
            else:
                ready, reason = False, "InvalidSpec"
                message = (
                    f"{refused.get(manager, 'the configuration would not be valid')}; not "
                    f"applied, the {kind} manager keeps CONTROLLER_ORCHESTRATORS or the defaults"
                )
        condition = ready_condition(
            status=ready, reason=reason, message=message, generation=generation, now=self._clock()
        )
        in_force: dict[str, Any] | None = None
        field_sources: dict[str, str] | None = None
        if manager is not None:
            in_force = section_to_spec(manager, getattr(config, manager))
            field_sources = {resource_field(n): s for n, s in sources[manager].items()}
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "inForce": in_force,
            "sources": field_sources,
            "conditions": merge_conditions((item.get("status") or {}).get("conditions"), condition),
        }
        if not status_differs(item, status):
            return
        if reason != "Applied":
            log.warning("Orchestrator %s not applied (%s): %s", name, reason, message)
        current = item.get("status") or {}
        patch = dict(status)
        # A merge patch keeps keys it does not name: remove those of another manager's fields.
        for key in ("inForce", "sources"):
            old = current.get(key)
            if isinstance(old, Mapping) and status[key] is not None:
                patch[key] = {**{k: None for k in old if k not in status[key]}, **status[key]}
        await view.write_status(item, patch)
