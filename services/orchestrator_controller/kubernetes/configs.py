"""Config resources: the controller's live settings (log level, loop periods, request limits).

A reconcile loop like the Orchestrator resources' one: every `interval_s` it lists the
namespace's Config resources and puts in force what the one that applies says, by swapping
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

With several controller replicas this loop runs on every one of them (each enforces the limits
and logs at the level in force in its own process); only the leader writes the status
(`is_leader`), as for Orchestrator resources.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from services.orchestrator_controller.kubernetes.resources import (
    GROUP,
    VERSION,
    merge_conditions,
    ready_condition,
    status_differs,
)
from services.orchestrator_controller.kubernetes.status_writes import patch_status
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


class ConfigResourceSync:
    """Keeps the controller's live settings as the Config resources of one namespace say."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        live: LiveConfig,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self._live = live
        self._is_leader = is_leader  # None: a single replica, which writes the status
        self._interval_s = interval_s
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                log.warning(
                    "listing Config resources failed (the live settings in force stay): %s %s",
                    exc.status,
                    exc.reason,
                )
            except (HTTPError, OSError) as exc:
                log.warning(
                    "the Kubernetes API is unreachable (the live settings in force stay): %s",
                    exc,
                )
            except Exception:
                log.exception("Config resource sync failed (the live settings stay)")
            await asyncio.sleep(self._interval_s)

    async def sync_once(self) -> str | None:
        """One reconcile; returns the name of the resource in force (None: the environment's)."""
        listing: Any = await asyncio.to_thread(
            self._api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL
        )
        items: list[dict[str, Any]] = list(listing.get("items", []))
        parsed = [(item, parse_config_resource(item)) for item in items]
        valid = [p for _, p in parsed if isinstance(p, ConfigResource)]
        winner = min(valid, key=lambda c: (c.created, c.name), default=None)
        if winner is None:
            self._live.apply({})
        else:
            self._live.apply(winner.overrides, winner.name)
        if self._is_leader is not None and not self._is_leader():  # the leader reports it
            return winner.name if winner is not None else None
        for item, found in parsed:
            try:
                await self._report(item, found, winner)
            except ApiException as exc:
                log.warning(
                    "writing the status of Config %s failed: %s %s",
                    (item.get("metadata") or {}).get("name"),
                    exc.status,
                    exc.reason,
                )
        return winner.name if winner is not None else None

    async def _report(
        self,
        item: dict[str, Any],
        found: ConfigResource | RefusedConfig,
        winner: ConfigResource | None,
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
        await self._patch_status(name, status)

    async def _patch_status(self, name: str, status: dict[str, Any]) -> None:
        await patch_status(self._api, self.namespace, PLURAL, name, status)
