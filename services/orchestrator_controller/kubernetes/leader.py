"""Leader election among the controller replicas through a coordination.k8s.io/v1 Lease.

The semantics are client-go's `tools/leaderelection` with a LeaseLock:

- The Lease holds `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime` and
  `leaseTransitions`. A replica takes it when it is absent (create; a concurrent create gets
  409 AlreadyExists and loses), when it names this replica, when it names nobody (released),
  or when the holder has not renewed it for `leaseDurationSeconds`: measured, as client-go
  does, on this replica's own monotonic clock from the moment it *saw* the record change, so
  clock skew between nodes cannot make a follower take over early. Every write is a replace
  carrying the resourceVersion just read, so of two replicas racing for the Lease the second
  gets 409 Conflict and stays a follower.
- The leader renews every `retry_period_s`. One that has not renewed for `renew_deadline_s`
  (shorter than the lease duration, so it stops before anyone may take over) steps down: its
  leader-only loops are cancelled, and it goes back to trying to acquire, which starts them
  again when it regains the Lease.
- On shutdown the leader stops its loops first, then releases the Lease (holderIdentity
  emptied, leaseDurationSeconds 1, client-go's ReleaseOnCancel) so another replica takes over
  at its next retry instead of after a whole lease duration.

Why not the client's own module: the official client (37.x) ships `kubernetes.leaderelection`
and `kubernetes.aio.leaderelection`. The first is thread-based (time.sleep, the leader's work
runs in a thread), builds its `CoordinationV1Api()` on the global default configuration instead
of the ApiClient the controller builds, and calls sys.exit on a bad configuration. The asyncio
one needs the separate aiohttp client stack (`kubernetes.aio.client`, with its own configuration
loading) next to the synchronous client every other loop here uses, and writes local wall-clock
times labelled UTC. Both run one election only (`run()` returns once leadership is lost), never
release the Lease on shutdown, do not keep `leaseTransitions`, and refuse a retry period under
1 s. What is needed is small: the code below, on the same synchronous `CoordinationV1Api` the
other loops use through asyncio.to_thread, with the stop-and-restart of the leader-only loops
built in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

LoopFactory = Callable[[], Coroutine[Any, Any, Any]]
# client-go's JitterFactor: followers retry after retry_period * (1 + up to 1.2).
JITTER_FACTOR = 1.2
# How long stopping leader-only loops may take before they are left behind.
_STOP_LOOPS_S = 10.0


def replica_identity(pod_name: str | None = None) -> str:
    """This replica's identity: its pod name (or host name) and a random suffix, so that a
    restarted pod with the same name is a new candidate, as client-go's examples do."""
    base = pod_name or os.environ.get("HOSTNAME") or socket.gethostname() or "controller"
    return f"{base}_{secrets.token_hex(4)}"


def _micro_time(moment: datetime) -> str:
    """A Lease's MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Elects one leader among the replicas using the Lease `namespace/name`.

    `run(loops)` campaigns until cancelled or `stop()`: while this replica leads, each of
    `loops` (a function returning a fresh coroutine) runs as a task; they are cancelled when it
    stops leading and created anew when it leads again. `is_leader()` says whether it leads
    now (False as soon as the renew deadline has passed, even before the loop notices).
    `on_change(leading)` is called at each change (the controller sets its gauge there).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        # client-go's checks (NewLeaderElector): otherwise two replicas could lead at once.
        if lease_duration_s <= renew_deadline_s:
            raise ValueError("the lease duration must be longer than the renew deadline")
        if renew_deadline_s <= JITTER_FACTOR * retry_period_s:
            raise ValueError(
                f"the renew deadline must be longer than {JITTER_FACTOR} x the retry period"
            )
        if not identity:
            raise ValueError("the identity must not be empty")
        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self._on_change = on_change
        # The record last seen and when (monotonic), as client-go's observedRecord/observedTime.
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._resource_version: str | None = None
        self._leading = False
        self._renewed_at = 0.0  # start of the last successful acquire or renew (monotonic)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ state

    def is_leader(self) -> bool:
        """Whether this replica leads now: it holds the Lease and its renew deadline is ahead."""
        return self._leading and time.monotonic() < self._renewed_at + self.renew_deadline_s

    @property
    def holder(self) -> str | None:
        """The holder of the Lease as last seen (None when nobody holds it)."""
        holder = (self._observed or {}).get("holderIdentity")
        return str(holder) if holder else None

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask `run` to stop its loops, release the Lease and return (a `background` stopper)."""
        self._stopping.set()

    async def run(self, loops: Sequence[LoopFactory] = ()) -> None:
        """Campaign for the Lease; run `loops` while leading; release the Lease at the end."""
        try:
            while not self._stopping.is_set():
                if await self.try_acquire_or_renew():
                    if not self._leading:
                        self._start_leading(loops)
                    await self._pause(self.retry_period_s)
                    continue
                if self._leading and not self.is_leader():
                    log.warning(
                        "%s could not renew the Lease %s/%s within %.0f s: stepping down",
                        self.identity,
                        self.namespace,
                        self.name,
                        self.renew_deadline_s,
                    )
                    await self._stop_leading()
                if self._leading:  # renewal failed, the deadline is ahead: retry
                    await self._pause(self.retry_period_s)
                else:
                    await self._pause(self.retry_period_s * (1 + random.random() * JITTER_FACTOR))
        finally:
            was_leading = self._leading
            await self._stop_leading()
            if was_leading:
                await self.release()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _start_leading(self, loops: Sequence[LoopFactory]) -> None:
        log.info("%s leads (Lease %s/%s)", self.identity, self.namespace, self.name)
        self._leading = True
        self._tasks = [asyncio.create_task(factory()) for factory in loops]
        self._changed(True)

    async def _stop_leading(self) -> None:
        """Cancel the leader-only loops and wait (bounded) for them to end."""
        if self._leading:  # at once: is_leader() is False while the loops are being stopped
            self._leading = False
            self._changed(False)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            done, stuck = await asyncio.wait(tasks, timeout=_STOP_LOOPS_S)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("a leader-only loop had failed: %r", task.exception())
            for task in stuck:
                log.error("leader-only loop %s ignored its cancel; left behind", task.get_name())

    def _changed(self, leading: bool) -> None:
        if self._on_change is not None:
            try:
                self._on_change(leading)
            except Exception:
                log.exception("leader change callback failed")

    # ------------------------------------------------------------------ the Lease

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew): True when this replica holds the Lease
        after it. Bounded by the renew deadline, so a hung call cannot keep a leader leading."""
        started = time.monotonic()
        timeout = self.renew_deadline_s
        if self._leading:
            timeout = max(0.05, self._renewed_at + self.renew_deadline_s - started)
        try:
            acquired = await asyncio.wait_for(self._attempt(), timeout=timeout)
        except TimeoutError:
            log.warning("Lease %s/%s: the API server did not answer", self.namespace, self.name)
            return False
        except ApiException as exc:
            if exc.status == 409:
                log.debug("Lease %s/%s: another replica wrote first", self.namespace, self.name)
            else:
                log.warning("Lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)
            return False
        except Exception as exc:  # network errors: the API server is unreachable
            log.warning("Lease %s/%s unreachable: %r", self.namespace, self.name, exc)
            return False
        if acquired:
            # Measured from before the read: the deadline never runs past what followers see.
            self._renewed_at = started
        return acquired

    async def _attempt(self) -> bool:
        now = datetime.now(UTC)
        try:
            lease = await self._call(self._api.read_namespaced_lease, self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            record = self._record(now, acquire_time=now, transitions=0)
            created = await self._call(
                self._api.create_namespaced_lease,
                self.namespace,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": record,
                },
            )
            self._saw(created)
            return True

        self._saw(lease)
        observed = self._observed or {}
        holder = observed.get("holderIdentity")
        duration = float(observed.get("leaseDurationSeconds") or self.lease_duration_s)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return False  # held by another, and renewed within its duration
        if holder == self.identity:
            record = self._record(
                now,
                acquire_time=observed.get("acquireTime") or _micro_time(now),
                transitions=int(observed.get("leaseTransitions") or 0),
            )
        else:
            record = self._record(
                now, acquire_time=now, transitions=int(observed.get("leaseTransitions") or 0) + 1
            )
            log.info(
                "%s takes the Lease %s/%s over from %s",
                self.identity,
                self.namespace,
                self.name,
                holder or "nobody (released)",
            )
        replaced = await self._call(
            self._api.replace_namespaced_lease, self.name, self.namespace, self._body(lease, record)
        )
        self._saw(replaced)
        return True

    async def release(self) -> bool:
        """Give the Lease up (holderIdentity emptied) if this replica holds it."""
        if self._observed is None or self._observed.get("holderIdentity") != self.identity:
            return False
        now = datetime.now(UTC)
        record = {
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "acquireTime": _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": int(self._observed.get("leaseTransitions") or 0),
        }
        lease = {"metadata": {"name": self.name, "resourceVersion": self._resource_version}}
        try:
            released = await asyncio.wait_for(
                self._call(
                    self._api.replace_namespaced_lease,
                    self.name,
                    self.namespace,
                    self._body(lease, record),
                ),
                timeout=max(1.0, self.retry_period_s * 2),
            )
        except Exception as exc:  # TimeoutError, ApiException, network errors
            # 409: someone wrote meanwhile, it is no longer ours to release.
            log.warning("releasing the Lease %s/%s failed: %r", self.namespace, self.name, exc)
            return False
        self._saw(released)
        log.info("%s released the Lease %s/%s", self.identity, self.namespace, self.name)
        return True

    def _record(
        self, now: datetime, *, acquire_time: datetime | str, transitions: int
    ) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "acquireTime": acquire_time
            if isinstance(acquire_time, str)
            else _micro_time(acquire_time),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def _body(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        metadata = dict(lease.get("metadata") or {})
        metadata.setdefault("name", self.name)
        metadata["namespace"] = self.namespace
        # A replace with the resourceVersion read: if another replica wrote since, 409.
        metadata["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
        current = dict(lease.get("spec") or {})
        current.update(spec)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {k: v for k, v in current.items() if v is not None},
        }

    def _saw(self, lease: dict[str, Any]) -> None:
        """Remember the record as client-go does: its observed time moves only when it changes."""
        spec = dict(lease.get("spec") or {})
        record = {
            key: spec.get(key)
            for key in (
                "holderIdentity",
                "leaseDurationSeconds",
                "acquireTime",
                "renewTime",
                "leaseTransitions",
            )
        }
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()
        self._resource_version = (lease.get("metadata") or {}).get("resourceVersion")

    async def _call(self, function: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Call the API in a worker thread; the Lease as the JSON the server sent."""
        response = await asyncio.to_thread(
            function,
            *args,
            _preload_content=False,
            _request_timeout=(max(1.0, self.retry_period_s), self.renew_deadline_s),
        )
        data = response.data if hasattr(response, "data") else response.read()
        result: dict[str, Any] = json.loads(data or b"{}")
        return result


def elector_from_settings(
    settings: Any,
    *,
    identity: str | None = None,
    api_client: client.ApiClient | None = None,
    on_change: Callable[[bool], None] | None = None,
) -> LeaderElector:
    """The elector the controller runs, configured by its settings (ControllerSettings)."""
    from services.orchestrator_controller.kubernetes.watcher import (
        create_api_client,
        in_cluster_namespace,
    )

    return LeaderElector(
        api_client or create_api_client(),
        settings.kubernetes_namespace or in_cluster_namespace() or "default",
        settings.lease_name,
        identity or replica_identity(settings.pod_name),
        lease_duration_s=settings.lease_duration_s,
        renew_deadline_s=settings.lease_renew_deadline_s,
        retry_period_s=settings.lease_retry_period_s,
        on_change=on_change,
    )
