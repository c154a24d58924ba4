"""List and watch Workflow resources; register their definitions; report back in their status.

The official kubernetes client is synchronous. Short calls (list, patch) run in worker threads
through asyncio.to_thread; the long watch stream runs in a daemon thread that hands events to
the event loop, so that shutting the controller down never waits for a watch to time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from services.orchestrator_controller.kubernetes.resources import (
    GROUP,
    PLURAL,
    REASON_FAILED,
    REASON_INVALID,
    REASON_REGISTERED,
    VERSION,
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
_MERGE_PATCH = "application/merge-patch+json"
_END = object()
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
    resource: dict[str, Any]
    workflow_name: str | None = None
    handled_generation: int | None = None
    last_run: dict[str, Any] | None = None


class WorkflowResourceWatcher:
    """Keeps registered workflow definitions in step with the Workflow resources of a namespace.

    `register(spec)` registers or updates a definition (validating it like any other spec);
    when it raises a refusal (an AppError, i.e. `.message` with `retryable` False, a SpecError
    or pydantic's ValidationError) the resource gets Ready=False/InvalidSpec with the message;
    any other failure gets Ready=Unknown/RegistrationFailed and is retried at the next resync.
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
        watch_timeout_s: int = 300,
        status_interval_s: float = 15.0,
        retry_delay_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api_client = api_client
        self._api = client.CustomObjectsApi(api_client)
        self.namespace = namespace or None
        self._register = register
        self._last_run_status = last_run_status
        self._watch_timeout_s = watch_timeout_s
        self._status_interval_s = status_interval_s
        self._retry_delay_s = retry_delay_s
        self._clock = clock
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: watch.Watch | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run the watch loop and the status loop in the background."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self.run(), name="workflow-resource-watch"),
            asyncio.create_task(self.run_status_sync(), name="workflow-resource-status"),
        ]

    async def stop(self) -> None:
        """Stop both loops and the watch stream."""
        if self._watch is not None:
            self._watch.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def run(self) -> None:
        """List, then watch from the listed resourceVersion; relist when the watch ends."""
        while True:
            try:
                resource_version = await self.resync()
                await self.watch_once(resource_version)
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    log.info("workflow watch expired (410 Gone); relisting")
                    continue
                log.warning("workflow watch failed: %s %s", exc.status, exc.reason)
                await asyncio.sleep(self._retry_delay_s)
            except Exception:
                log.exception("workflow watch failed")
                await asyncio.sleep(self._retry_delay_s)

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

    # ------------------------------------------------------------------ list and watch

    def _list_function(self) -> tuple[Callable[..., Any], tuple[str, ...]]:
        if self.namespace:
            return self._api.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL)
        return self._api.list_cluster_custom_object, (GROUP, VERSION, PLURAL)

    async def resync(self) -> str:
        """Reconcile every listed resource; forget the ones that are gone; return the list's RV."""
        function, args = self._list_function()
        listing = await asyncio.to_thread(function, *args)
        seen: set[tuple[str, str]] = set()
        for item in listing.get("items", []):
            resource = _with_defaults(item, listing)
            key = _key(resource)
            seen.add(key)
            await self.reconcile(resource, force=key not in self._tracked)
        for key in set(self._tracked) - seen:
            del self._tracked[key]
        return str(listing.get("metadata", {}).get("resourceVersion", ""))

    async def watch_once(self, resource_version: str) -> None:
        """Handle watch events from `resource_version` until the server ends the stream."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = watch.Watch()
        self._watch = stream
        function, args = self._list_function()

        def deliver(item: Any) -> None:
            # The loop may be gone when a stopped stream finally unblocks.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for event in stream.stream(
                    function,
                    *args,
                    resource_version=resource_version or None,
                    timeout_seconds=self._watch_timeout_s,
                    allow_watch_bookmarks=True,
                    # A silent server must not hold the thread past the server-side timeout.
                    _request_timeout=(10, self._watch_timeout_s + 30),
                ):
                    deliver(event)
            except BaseException as exc:  # handed to the loop, which decides
                deliver(exc)
            else:
                deliver(_END)

        thread = threading.Thread(target=pump, name="workflow-watch", daemon=True)
        thread.start()
        try:
            while True:
                event = await queue.get()
                if event is _END:
                    return
                if isinstance(event, BaseException):
                    raise event
                await self.handle_event(event)
        finally:
            stream.stop()
            self._watch = None

    async def handle_event(self, event: Mapping[str, Any]) -> None:
        """Act on one watch event."""
        kind = event.get("type")
        resource = event.get("raw_object") or event.get("object")
        if not isinstance(resource, Mapping):
            return
        if kind in ("ADDED", "MODIFIED"):
            await self.reconcile(dict(resource))
        elif kind == "DELETED":
            # The definition stays registered: runs may still reference it.
            self._tracked.pop(_key(resource), None)

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, resource: dict[str, Any], *, force: bool = False) -> None:
        """Register the definition a resource carries and record the outcome in its status."""
        try:
            ref = ResourceRef.from_resource(resource)
        except InvalidWorkflowResource as exc:
            log.warning("ignoring a Workflow resource: %s", exc.message)
            return
        key = (ref.namespace, ref.name)
        tracked = self._tracked.get(key)
        if tracked is None or tracked.ref.uid != ref.uid:
            tracked = _Tracked(ref=ref, resource=resource)
            self._tracked[key] = tracked
        tracked.ref, tracked.resource = ref, resource
        # Status writes come back as MODIFIED events with an unchanged generation: skip them.
        if not force and tracked.handled_generation == ref.generation:
            return

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
            await self._patch_status(ref, status)

    # ------------------------------------------------------------------ last run

    async def sync_status(self) -> int:
        """Write each registered workflow's last run into status.lastRun; return the writes."""
        written = 0
        for tracked in list(self._tracked.values()):
            if tracked.workflow_name is None:
                continue
            run = await self._last_run_status(tracked.workflow_name)
            if run is None:
                continue
            try:
                last_run = run_to_status(run)
            except ValueError as exc:
                log.warning("cannot report the last run of %s: %s", tracked.workflow_name, exc)
                continue
            current = (tracked.resource.get("status") or {}).get("lastRun")
            if last_run in (tracked.last_run, current):
                tracked.last_run = last_run
                continue
            # A merge patch keeps keys it does not mention: null out the previous run's extras.
            body = dict.fromkeys(_LAST_RUN_OPTIONAL) | last_run
            if await self._patch_status(tracked.ref, {"lastRun": body}):
                tracked.last_run = last_run
                written += 1
        return written

    async def _patch_status(self, ref: ResourceRef, status: dict[str, Any]) -> bool:
        namespace = ref.namespace or self.namespace
        if not namespace:
            return False
        try:
            await asyncio.to_thread(
                self._api.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                ref.name,
                {"status": status},
                _content_type=_MERGE_PATCH,
            )
        except ApiException as exc:
            if exc.status == 404:  # deleted meanwhile
                return False
            raise
        return True


def _key(resource: Mapping[str, Any]) -> tuple[str, str]:
    metadata = resource.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _with_defaults(item: Mapping[str, Any], listing: Mapping[str, Any]) -> dict[str, Any]:
    # Items of a list response may omit apiVersion and kind; the list carries them.
    resource = dict(item)
    if "apiVersion" not in resource and listing.get("apiVersion"):
        resource["apiVersion"] = listing["apiVersion"]
    resource.setdefault("kind", "Workflow")
    return resource
