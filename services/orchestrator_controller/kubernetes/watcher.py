"""Workflow resources: each registers a workflow definition; its status says how that went and
what the workflow's last run did.

The list, watch, re-list and backoff are the shared informer's (kubernetes/informer.py); this
module supplies the Workflow kind: `reconcile` registers the definition a resource carries
(validated like any other spec) and writes the outcome to its status, `delete` forgets it (the
definition stays registered: runs may still reference it). A separate loop
(`run_status_sync`) writes each registered workflow's last run into status.lastRun.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from services.orchestrator_controller.kubernetes.informer import Informer, ResourceView
from services.orchestrator_controller.kubernetes.resources import (
    KIND,
    PLURAL,
    REASON_FAILED,
    REASON_INVALID,
    REASON_REGISTERED,
    InvalidWorkflowResource,
    ResourceRef,
    ready_condition,
    registration_status,
    resource_to_spec,
    run_to_status,
    spec_error_message,
    status_differs,
)

log = logging.getLogger(__name__)

Register = Callable[[dict[str, Any]], Awaitable[object]]
LastRunStatus = Callable[[str], Awaitable[Mapping[str, Any] | None]]

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_LAST_RUN_OPTIONAL = ("startedAt", "finishedAt", "message")


def create_api_client() -> client.ApiClient:
    """An ApiClient from the pod's service account, or from ~/.kube/config outside a cluster."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def in_cluster_namespace() -> str | None:
    """The namespace this pod runs in, when it runs in a cluster."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


@dataclass
class _Tracked:
    ref: ResourceRef
    workflow_name: str | None = None
    handled_generation: int | None = None
    last_run: dict[str, Any] | None = None


class WorkflowResources:
    """The Workflow kind: registers the definition each resource carries.

    `register(spec)` registers or updates a definition (validating it like any other spec);
    when it raises a refusal (an AppError, i.e. `.message` with `retryable` False, a SpecError
    or pydantic's ValidationError) the resource gets Ready=False/InvalidSpec with the message;
    any other failure gets Ready=Unknown/RegistrationFailed and is retried at the next resync.
    """

    plural = PLURAL
    kind = KIND

    def __init__(
        self, register: Register, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._register = register
        self._clock = clock
        self.tracked: dict[str, _Tracked] = {}

    async def delete(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Forget the resource; its definition stays registered (runs may reference it)."""
        self.tracked.pop(str((resource.get("metadata") or {}).get("name") or ""), None)

    async def reconcile(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Register the definition a resource carries and record the outcome in its status."""
        try:
            ref = ResourceRef.from_resource(resource)
        except InvalidWorkflowResource as exc:
            log.warning("ignoring a Workflow resource: %s", exc.message)
            return
        tracked = self.tracked.get(ref.name)
        if tracked is None or tracked.ref.uid != ref.uid:
            tracked = _Tracked(ref=ref)
            self.tracked[ref.name] = tracked
        tracked.ref = ref
        if tracked.handled_generation == ref.generation:
            return  # registered (or refused) already: a resync changes nothing

        now = self._clock()
        workflow_name: str | None = None
        version: int | None = None
        try:
            spec = resource_to_spec(resource)
            await self._register(spec)
        except Exception as exc:
            message = spec_error_message(exc)
            if message is None:
                log.warning("registering Workflow %s/%s failed: %r", ref.namespace, ref.name, exc)
                condition = ready_condition(
                    status=None,
                    reason=REASON_FAILED,
                    message=f"registration failed, will retry: {exc}",
                    generation=ref.generation,
                    now=now,
                )
                tracked.handled_generation = None
            else:
                log.info("Workflow %s/%s refused: %s", ref.namespace, ref.name, message)
                condition = ready_condition(
                    status=False,
                    reason=REASON_INVALID,
                    message=message,
                    generation=ref.generation,
                    now=now,
                )
                tracked.handled_generation = ref.generation
                tracked.workflow_name = None
        else:
            workflow_name, version = str(spec["name"]), int(spec["version"])
            condition = ready_condition(
                status=True,
                reason=REASON_REGISTERED,
                message=f"registered {workflow_name} version {version}",
                generation=ref.generation,
                now=now,
            )
            tracked.handled_generation = ref.generation
            tracked.workflow_name = workflow_name
        status = registration_status(
            resource, condition, workflow_name=workflow_name, version=version
        )
        if status_differs(resource, status):
            await view.write_status(resource, status)


class WorkflowResourceWatcher(Informer):
    """Keeps registered workflow definitions in step with the Workflow resources of a namespace,
    and reports each one's last run.

    `last_run_status(workflow_name)` returns the last run as a mapping (run_id, status,
    started_at, finished_at, error) or None; `sync_status()` writes it to status.lastRun.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str | None,
        register: Register,
        last_run_status: LastRunStatus,
        *,
        resync_s: float = 300.0,
        watch_timeout_s: int = 300,
        status_interval_s: float = 15.0,
        retry_delay_s: float = 0.5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.workflows = WorkflowResources(register, clock=clock)
        super().__init__(
            api_client,
            namespace or "default",
            self.workflows,
            resync_s=resync_s,
            watch_timeout_s=watch_timeout_s,
            backoff_s=retry_delay_s,
        )
        self._last_run_status = last_run_status
        self._status_interval_s = status_interval_s
        self._status_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the informer and the last-run loop in the background."""
        await super().start()
        if self._status_task is None:
            self._status_task = asyncio.create_task(
                self.run_status_sync(), name="workflow-resource-status"
            )

    async def stop(self) -> None:
        """Stop both loops and the watch stream."""
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status_task
            self._status_task = None
        await super().stop()

    async def run_status_sync(self) -> None:
        """Write the last run of every registered workflow into its resource, periodically."""
        while True:
            try:
                await self.sync_status()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("workflow status sync failed")
            await asyncio.sleep(self._status_interval_s)

    async def sync_status(self) -> int:
        """Write each registered workflow's last run into status.lastRun; return the writes."""
        written = 0
        for name, tracked in list(self.workflows.tracked.items()):
            resource = self.view.get(name)
            if tracked.workflow_name is None or resource is None:
                continue
            run = await self._last_run_status(tracked.workflow_name)
            if run is None:
                continue
            try:
                last_run = run_to_status(run)
            except ValueError as exc:
                log.warning("cannot report the last run of %s: %s", tracked.workflow_name, exc)
                continue
            current = (resource.get("status") or {}).get("lastRun")
            if last_run in (tracked.last_run, current):
                tracked.last_run = last_run
                continue
            # A merge patch keeps keys it does not mention: null out the previous run's extras.
            body = dict.fromkeys(_LAST_RUN_OPTIONAL) | last_run
            if await self.view.write_status(resource, {"lastRun": body}):
                tracked.last_run = last_run
                written += 1
        return written
