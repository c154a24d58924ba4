"""One list-and-watch loop for every kind of custom resource the controller acts upon.

An `Informer` keeps a local copy (the store) of one kind's resources in one namespace, the way
client-go's reflector and informer do, and calls what that kind supplies (a `Kind`):

- **List**, then **watch** from the list's resourceVersion (with bookmarks), so that a create,
  an edit or a delete reaches `reconcile` or `delete` within the time it takes the API server to
  send the event, not at the next poll.
- **Re-list** when the watch answers 410 Gone (the history it resumes from was compacted) and
  every `resync_s` (a periodic resync): each listed resource is reconciled again, and those that
  vanished meanwhile (a delete whose event was lost) are deleted. A watch that the server ends
  (its timeout) is resumed from the last resourceVersion seen, without a list.
- **Backoff** on API errors: failed lists and watches are retried after a delay that doubles
  from `backoff_s` up to `max_backoff_s` (with jitter), reset once a watch has run its course.
  A kind's own failure (a database away) is logged; that resource is retried at the next event
  or resync.
- **Status echoes are skipped**: a MODIFIED event whose generation is the one last reconciled
  (the controller's own status write, a label edit) updates the store and calls nothing.
- **Status writes** go through `ResourceView.write_status`, which merge-patches the status
  subresource (`status_writes.patch_status`), keeps the store current with the answer (so the
  next `status_differs` compares against what the server holds), and writes nothing while
  `is_leader()` is False: kinds run on every replica (Orchestrator, Config) put resources in
  force in their own process, but only the leader (kubernetes/leader.py) reports. A replica
  that becomes the leader reconciles every resource again (within `leader_poll_s`), so the
  statuses it could not write as a follower are written at once.

Which replicas run an informer is the caller's choice (app.py): a leader-only one is one of the
loops `LeaderElector.run` starts and cancels; `run()` is a fresh coroutine each time, so a
replica that regains the Lease lists anew.

The official kubernetes client is synchronous: short calls run in worker threads
(asyncio.to_thread) and the long watch stream in a daemon thread that hands events to the loop,
so stopping never waits for a watch to time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from services.orchestrator_controller.kubernetes.resources import GROUP, VERSION
from services.orchestrator_controller.kubernetes.status_writes import patch_status

log = logging.getLogger(__name__)

Resource = dict[str, Any]
_END = object()


class Kind(Protocol):
    """What one kind of resource supplies: its plural, its kind, and what to do on a change.

    `reconcile(resource, view)` is called for a resource created, edited (its generation moved)
    or listed again at a resync; `delete(resource, view)` for one deleted (the resource as last
    seen). `view` holds every resource of the kind as now known, for kinds whose outcome
    depends on the others (the oldest of two resources naming one model wins). Both must be
    idempotent: a resync calls `reconcile` again with nothing changed.
    """

    plural: str
    kind: str

    async def reconcile(self, resource: Resource, view: ResourceView) -> None: ...

    async def delete(self, resource: Resource, view: ResourceView) -> None: ...


def resource_key(resource: Mapping[str, Any]) -> str:
    """The name a resource is known by in one namespace's store."""
    return str((resource.get("metadata") or {}).get("name") or "")


def _generation(resource: Mapping[str, Any]) -> tuple[str, int]:
    metadata = resource.get("metadata") or {}
    return str(metadata.get("uid") or ""), int(metadata.get("generation") or 1)


class ResourceView:
    """The resources of one kind in one namespace as the informer knows them, and the way to
    write their status."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        namespace: str,
        plural: str,
        is_leader: Callable[[], bool] | None,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.plural = plural
        self._is_leader = is_leader
        self._store: dict[str, Resource] = {}

    def items(self) -> list[Resource]:
        """Every resource known, by name."""
        return [self._store[name] for name in sorted(self._store)]

    def get(self, name: str) -> Resource | None:
        """The resource of that name, if known."""
        return self._store.get(name)

    @property
    def reports(self) -> bool:
        """Whether this replica writes status (the leader, or a replica not electing one)."""
        return self._is_leader is None or self._is_leader()

    async def write_status(self, resource: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Merge-patch `status` into the resource's status subresource; False when not written
        (not the leader, or the resource deleted meanwhile)."""
        if not self.reports:
            return False
        name = resource_key(resource)
        written = await patch_status(self._api, self.namespace, self.plural, name, status)
        if written is None:
            return False
        current = self._store.get(name)
        if current is not None and _generation(current)[0] == _generation(written)[0]:
            # The server's answer is newer than what the store holds; its echo is skipped.
            self._store[name] = self._fill(written, current)
        return True

    def _fill(self, resource: Mapping[str, Any], like: Mapping[str, Any]) -> Resource:
        # List items and patch answers may omit apiVersion and kind; the store keeps them.
        filled = dict(resource)
        for key in ("apiVersion", "kind"):
            if key not in filled and key in like:
                filled[key] = like[key]
        return filled


class Informer:
    """Lists and watches one kind's resources in a namespace and hands changes to the kind."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        kind: Kind,
        *,
        resync_s: float = 300.0,
        watch_timeout_s: int = 300,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        is_leader: Callable[[], bool] | None = None,
        leader_poll_s: float = 1.0,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.kind = kind
        self.view = ResourceView(self._api, namespace, kind.plural, is_leader)
        self.resync_s = resync_s
        self._watch_timeout_s = watch_timeout_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._reconciled: dict[str, tuple[str, int]] = {}  # name -> (uid, generation) handled
        self._undeleted: dict[str, Resource] = {}  # deletions whose handling failed: retried
        self._reporting = False  # whether the last reconcile round could write status
        self._leader_poll_s = leader_poll_s
        self._watch: watch.Watch | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run `run()` in the background (tests and single loops; app.py awaits `run()`)."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self.run(), name=f"{self.kind.plural}-informer")]

    async def stop(self) -> None:
        """Stop the background loop and its watch stream."""
        if self._watch is not None:
            self._watch.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def run(self) -> None:
        """List, watch, re-list on 410 and at each resync; back off on API errors. Forever."""
        failures = 0
        while True:
            try:
                resource_version = await self.resync()
                deadline = time.monotonic() + self.resync_s
                while time.monotonic() < deadline:
                    resource_version = await self.watch_once(resource_version, deadline)
                    # Reset only once a watch has run its course: a list that succeeds before
                    # a watch that fails (no `watch` verb in the Role) must not retry at once.
                    failures = 0
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s: the watch expired (410 Gone); re-listing", self.kind.plural)
                    continue
                failures += 1
                delay = self._delay(failures)
                log.warning(
                    "%s: the Kubernetes API answered %s %s; retrying in %.1f s",
                    self.kind.plural,
                    exc.status,
                    exc.reason,
                    delay,
                )
                await asyncio.sleep(delay)
            except (HTTPError, OSError) as exc:
                failures += 1
                delay = self._delay(failures)
                log.warning(
                    "%s: the Kubernetes API is unreachable (%s); retrying in %.1f s",
                    self.kind.plural,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            except Exception:
                failures += 1
                delay = self._delay(failures)
                log.exception("%s: failed; retrying in %.1f s", self.kind.plural, delay)
                await asyncio.sleep(delay)

    def _delay(self, failures: int) -> float:
        delay = min(self._max_backoff_s, self._backoff_s * 2 ** (failures - 1))
        return delay * (1 + random.random() / 2)

    # ------------------------------------------------------------------ list

    async def resync(self) -> str:
        """List the kind's resources; delete those gone, reconcile every one; return the RV."""
        listing: Any = await asyncio.to_thread(
            self._api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            self.kind.plural,
        )
        listed = {resource_key(r): r for r in (self._defaults(i) for i in listing.get("items", []))}
        before = {**self._undeleted, **self.view._store}
        self._undeleted = {}
        self.view._store = dict(listed)
        for name, old in before.items():
            new = listed.get(name)
            if new is None or _generation(new)[0] != _generation(old)[0]:
                await self._delete(old)
        self._reporting = self.view.reports
        for resource in list(listed.values()):
            await self._reconcile(resource)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _report_if_now_leader(self) -> None:
        """A replica that has just become the leader reconciles every resource again: the
        statuses it computed as a follower were not written."""
        reporting = self.view.reports
        if reporting and not self._reporting:
            log.info("%s: now the leader; writing the statuses", self.kind.plural)
            for resource in self.view.items():
                await self._reconcile(resource)
        self._reporting = reporting

    def _defaults(self, item: Mapping[str, Any]) -> Resource:
        # Items of a list response omit apiVersion and kind, and may omit the namespace.
        resource = dict(item)
        resource.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        resource.setdefault("kind", self.kind.kind)
        metadata = dict(resource.get("metadata") or {})
        metadata.setdefault("namespace", self.namespace)
        resource["metadata"] = metadata
        return resource

    # ------------------------------------------------------------------ watch

    async def watch_once(self, resource_version: str, deadline: float) -> str:
        """Handle events from `resource_version` until the server ends the stream (at the
        latest by `deadline`, a monotonic time); return the last resourceVersion seen."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = watch.Watch()
        self._watch = stream
        timeout = max(1, min(self._watch_timeout_s, math.ceil(deadline - time.monotonic())))

        def deliver(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone by now
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for event in stream.stream(
                    self._api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    self.kind.plural,
                    resource_version=resource_version or None,
                    timeout_seconds=timeout,
                    allow_watch_bookmarks=True,
                    # A silent server must not hold the thread past its own timeout.
                    _request_timeout=(10, timeout + 30),
                ):
                    deliver(event)
            except BaseException as exc:  # handed to the loop, which decides
                deliver(exc)
            else:
                deliver(_END)

        thread = threading.Thread(target=pump, name=f"{self.kind.plural}-watch", daemon=True)
        thread.start()
        last = resource_version
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=self._leader_poll_s)
                except TimeoutError:
                    await self._report_if_now_leader()
                    continue
                if event is _END:
                    return last
                if isinstance(event, BaseException):
                    raise event
                last = await self.handle_event(event) or last
                await self._report_if_now_leader()
        finally:
            stream.stop()
            self._watch = None

    async def handle_event(self, event: Mapping[str, Any]) -> str | None:
        """Act on one watch event; its resourceVersion."""
        kind = event.get("type")
        raw = event.get("raw_object") or event.get("object")
        if not isinstance(raw, Mapping):
            return None
        version = (raw.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return str(version) if version else None
        resource = self._defaults(raw)
        name = resource_key(resource)
        if kind in ("ADDED", "MODIFIED"):
            old = self.view._store.get(name)
            if old is not None and _generation(old)[0] != _generation(resource)[0]:
                self.view._store.pop(name)
                await self._delete(old)  # deleted and created again between two events
            self.view._store[name] = resource
            if self._reconciled.get(name) != _generation(resource):
                await self._reconcile(resource)
        elif kind == "DELETED":
            self.view._store.pop(name, None)
            await self._delete(resource)
        return str(version) if version else None

    # ------------------------------------------------------------------ the kind's part

    async def _reconcile(self, resource: Resource) -> None:
        name = resource_key(resource)
        try:
            await self.kind.reconcile(resource, self.view)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._reconciled.pop(name, None)  # tried again at the next event or resync
            log.exception("%s: reconciling %s failed", self.kind.plural, name)
        else:
            self._reconciled[name] = _generation(resource)

    async def _delete(self, resource: Resource) -> None:
        name = resource_key(resource)
        self._reconciled.pop(name, None)
        try:
            await self.kind.delete(resource, self.view)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._undeleted[name] = resource  # tried again at the next resync
            log.exception("%s: handling the deletion of %s failed", self.kind.plural, name)
