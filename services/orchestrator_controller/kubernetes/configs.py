"""Config resources: the controller's live settings (log level, loop periods, request limits).

The Config kind of the shared informer (kubernetes/informer.py): at each change (a watch
event, so within a moment of the edit) it puts in force what the one of the namespace's Config
resources that applies says, by swapping
the live settings the controller reads at each use (`settings.live`, see
services/orchestrator_controller/live/settings.py), so the next tick, the next request and the
next log line follow it. Each value that changed is logged.

Precedence, field by field: the code's defaults < the controller's environment < the Config
resource. A field the resource leaves out keeps the environment's value (or the default); a
deleted resource gives every field back its environment's value.

One resource applies: the oldest valid one (creationTimestamp, then name); the others say
Conflict. A resource naming a setting read only at start (a URL, a port, a key, the namespace)
says RestartRequired with the variable to set instead, one with an unknown field or a bad value
says InvalidSpec with the reason; neither is applied. When the API server cannot be read, the
settings last applied stay.

Each resource's status: a Ready condition (Applied, Conflict, RestartRequired or InvalidSpec),
`observedGeneration`, `inForce` (every live setting in force, in the resource's spelling) and
`sources` (where each of them comes from).

With several controller replicas its informer runs on every one of them (each enforces the limits
and logs at the level in force in its own process); only the leader writes the status
(`is_leader`), as for Orchestrator resources, and the log level the resource sets for every
engine and agent (`platform_settings`, shared/live_log.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException

from services.orchestrator_controller.kubernetes.informer import ResourceView
from services.orchestrator_controller.kubernetes.resources import (
    merge_conditions,
    ready_condition,
    status_differs,
)
from services.orchestrator_controller.live.resource import (
    REASON_INVALID,
    InvalidConfigSpec,
    resource_field,
    spec_overrides,
    to_spec,
)
from services.orchestrator_controller.live.settings import LiveConfig

log = logging.getLogger(__name__)

PLURAL = "configs"

# Puts a log level in force for the whole platform (None: each service keeps its own).
PublishLogLevel = Callable[[str | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class ConfigResource:
    name: str
    created: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefusedConfig:
    reason: str
    message: str


def parse_config_resource(resource: Mapping[str, Any]) -> ConfigResource | RefusedConfig:
    """The live settings a resource sets, or why it cannot set them."""
    metadata = resource.get("metadata") or {}
    spec = resource.get("spec")
    if not isinstance(spec, Mapping):
        return RefusedConfig(REASON_INVALID, "spec: missing or not an object")
    try:
        overrides = spec_overrides(spec)
    except InvalidConfigSpec as exc:
        return RefusedConfig(exc.reason, str(exc))
    return ConfigResource(
        name=str(metadata.get("name") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
        overrides=overrides,
    )


class ConfigResources:
    """The Config kind: keeps the controller's live settings as the Config resources of one
    namespace say. Each change recomputes the whole: the oldest valid resource applies."""

    plural = PLURAL
    kind = "Config"

    def __init__(
        self,
        live: LiveConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish: PublishLogLevel | None = None,
    ) -> None:
        self._live = live
        self._clock = clock
        self._publish = publish
        self.applied: str | None = None  # the name of the resource in force (None: the env's)

    async def reconcile(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Put in force what the resource that applies says."""
        await self._sync(view)

    async def delete(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Put in force what the remaining resources say (the environment's, when none)."""
        await self._sync(view)

    async def _sync(self, view: ResourceView) -> None:
        parsed = [(item, parse_config_resource(item)) for item in view.items()]
        valid = [p for _, p in parsed if isinstance(p, ConfigResource)]
        winner = min(valid, key=lambda c: (c.created, c.name), default=None)
        if winner is None:
            self._live.apply({})
        else:
            self._live.apply(winner.overrides, winner.name)
        self.applied = winner.name if winner is not None else None
        if not view.reports:  # a follower: the leader reports
            return
        if self._publish is not None:  # for every engine and agent (shared/live_log.py)
            level = winner.overrides.get("log_level") if winner is not None else None
            await self._publish(level, f"resource {winner.name}" if winner else None)
        for item, found in parsed:
            try:
                await self._report(item, found, winner, view)
            except ApiException as exc:
                log.warning(
                    "writing the status of Config %s failed: %s %s",
                    (item.get("metadata") or {}).get("name"),
                    exc.status,
                    exc.reason,
                )

    async def _report(
        self,
        item: dict[str, Any],
        found: ConfigResource | RefusedConfig,
        winner: ConfigResource | None,
        view: ResourceView,
    ) -> None:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name"))
        generation = int(metadata.get("generation") or 1)
        if isinstance(found, RefusedConfig):
            ready, reason = False, found.reason
            message = f"{found.message}; not applied, the live settings are " + (
                f"those of Config {winner.name}" if winner else "the controller's environment's"
            )
        elif winner is not None and winner.name != found.name:
            ready, reason = False, "Conflict"
            message = (
                f"the live settings are set by the older Config {winner.name}; this one is not "
                "applied"
            )
        else:
            ready, reason = True, "Applied"
            fields = ", ".join(resource_field(n) for n in found.overrides) or "no field"
            message = (
                f"the live settings are set by this resource ({fields}); the others keep the "
                "controller's environment or the defaults"
            )
        condition = ready_condition(
            status=ready, reason=reason, message=message, generation=generation, now=self._clock()
        )
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "inForce": to_spec(self._live.current),
            "sources": {resource_field(n): s for n, s in self._live.sources.items()},
            "conditions": merge_conditions((item.get("status") or {}).get("conditions"), condition),
        }
        if not status_differs(item, status):
            return
        if reason != "Applied":
            log.warning("Config %s not applied (%s): %s", name, reason, message)
        await view.write_status(item, status)
