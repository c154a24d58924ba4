"""Leader election among controller replicas through a coordination.k8s.io/v1 Lease.

Every replica is a real LeaderElector with its own kubernetes ApiClient (told apart by the fake
through its User-Agent) against the fake API server of fake_kube_api.py, at the HTTP boundary;
the leader-only loops are the controller's real ones (the Model kind's informer on a real
PostgreSQL schema) and the every-replica loop is the real Orchestrator kind's informer. Times
are short but every wait polls against a generous deadline (the machines are shared and noisy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.config import kube_config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.kubernetes.informer import Informer
from services.orchestrator_controller.kubernetes.leader import LeaderElector, replica_identity
from services.orchestrator_controller.kubernetes.models import ModelResources
from services.orchestrator_controller.kubernetes.orchestrators import OrchestratorResources
from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.service import Policies
from tests.polling import eventually
from tests.schedules.helpers import controller

from .fake_kube_api import FakeKubeApi, client_for
from .helpers import NAMESPACE
from .test_models import model_resource
from .test_watcher import example, ready

pytestmark = pytest.mark.timeout(120)
PLURAL = "models"
LEASE = "ingestion-controller"
RETRY_S = 0.3
MODELS = "/apis/ingestion.platform.io/v1alpha1/namespaces/ingest/models"


def models_informer(api_client: client.ApiClient, db: async_sessionmaker) -> Informer:
    """A replica's Model informer, re-listing about every second."""
    return Informer(api_client, NAMESPACE, ModelResources(db), resync_s=0.1)


class Replica:
    """One controller replica's Kubernetes side: an elector and its clients."""

    def __init__(self, fake: FakeKubeApi, name: str, **durations: float) -> None:
        self.name = name
        self.api_client = client_for(fake, name)
        self.changes: list[bool] = []
        self.elector = LeaderElector(
            self.api_client,
            NAMESPACE,
            LEASE,
            replica_identity(name),
            on_change=self.changes.append,
            **(
                {"lease_duration_s": 30.0, "renew_deadline_s": 3.0, "retry_period_s": RETRY_S}
                | durations
            ),
        )
        self.task: asyncio.Task[None] | None = None

    def start(self, *loops: Callable[[], Any]) -> None:
        self.task = asyncio.create_task(self.elector.run(loops))

    async def stop(self) -> None:
        """Stop as the controller's shutdown does (the `background` stopper), then wait."""
        self.elector.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout=20)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.api_client.close()


@contextlib.asynccontextmanager
async def replicas(
    fake: FakeKubeApi, *names: str, **durations: float
) -> AsyncIterator[list[Replica]]:
    started = [Replica(fake, name, **durations) for name in names]
    try:
        yield started
    finally:
        for replica in started:
            replica.close()
        for replica in started:
            if replica.task is not None:
                with contextlib.suppress(BaseException):
                    await replica.task


def leaders(group: list[Replica]) -> list[Replica]:
    return [r for r in group if r.elector.is_leader()]


def model_reads_by(fake: FakeKubeApi, agent: str) -> int:
    return sum(
        1
        for r in list(fake.requests)
        if r["method"] == "GET" and r.get("agent") == agent and r["path"].startswith(MODELS)
    )


def status_writers(fake: FakeKubeApi) -> set[str]:
    return {r["agent"] for r in fake.status_patches()}


async def bound_alias(db: async_sessionmaker) -> str | None:
    async with db() as session:
        row = (
            await session.execute(
                text("SELECT alias FROM model_bindings WHERE model = 'retry_strategy'")
            )
        ).one_or_none()
    return None if row is None else str(row.alias)


async def test_two_replicas_one_leads_and_only_its_loops_register_and_write_statuses(
    fake_api: FakeKubeApi, db: async_sessionmaker
) -> None:
    fake = fake_api
    fake.apply(model_resource("rs", "retry_strategy", "retry_strategy", "champion"), NAMESPACE)
    async with replicas(fake, "replica-a", "replica-b") as group:
        for replica in group:
            sync = models_informer(replica.api_client, db)
            replica.start(sync.run)

        await eventually(lambda: len(leaders(group)) == 1)
        (leader,) = leaders(group)
        (follower,) = [r for r in group if r is not leader]
        await eventually(lambda: follower.elector.holder == leader.elector.identity)
        await eventually(lambda: fake.get("rs", NAMESPACE).get("status") is not None)
        assert await bound_alias(db) == "champion"
        # Several renewals later: still one leader, and only its loop ever ran.
        await asyncio.sleep(5 * RETRY_S)
        assert leaders(group) == [leader] and follower.changes == []
        assert model_reads_by(fake, leader.name) > 0
        assert model_reads_by(fake, follower.name) == 0
        assert status_writers(fake) == {leader.name}
        lease = fake.lease(LEASE, NAMESPACE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == leader.elector.identity
        assert lease["spec"]["leaseDurationSeconds"] == 30
        assert lease["spec"]["leaseTransitions"] == 0

        # The leader shuts down: it stops its loop, releases the Lease, and the other takes
        # over at its next retry (the lease duration is 30 s: this is the release, not expiry).
        await leader.stop()
        assert leader.changes == [True, False]
        released = fake.lease(LEASE, NAMESPACE)
        assert released is not None and not released["spec"].get("holderIdentity")
        reads_after_stop = model_reads_by(fake, leader.name)
        await eventually(follower.elector.is_leader, within_s=10)
        assert follower.changes == [True]

        # The new leader's loop acts on an edit; the old one's is gone.
        fake.apply(model_resource("rs", "retry_strategy", "retry_strategy", "canary"), NAMESPACE)

        async def rebound() -> bool:
            return await bound_alias(db) == "canary"

        await eventually(rebound)
        await eventually(lambda: follower.name in status_writers(fake))
        assert model_reads_by(fake, leader.name) == reads_after_stop
        lease = fake.lease(LEASE, NAMESPACE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == follower.elector.identity
        assert lease["spec"]["leaseTransitions"] == 1


async def test_a_leader_cut_off_from_the_api_steps_down_by_its_renew_deadline(
    fake_api: FakeKubeApi, db: async_sessionmaker
) -> None:
    fake = fake_api
    durations = {"lease_duration_s": 4.0, "renew_deadline_s": 2.0, "retry_period_s": RETRY_S}
    async with replicas(fake, "replica-a", "replica-b", **durations) as group:
        a, b = group
        a.start(models_informer(a.api_client, db).run)
        await eventually(a.elector.is_leader)
        b.start(models_informer(b.api_client, db).run)
        await eventually(lambda: b.elector.holder == a.elector.identity)
        await eventually(lambda: model_reads_by(fake, "replica-a") > 0)

        # a's Lease requests fail (500) from now on: it cannot renew. Its is_leader() turns
        # False by its renew deadline (2 s), then its loop is stopped; b waits the whole lease
        # duration (4 s after it last saw a renewal) and takes over.
        fake.refuse_leases.add("replica-a")
        overlap: list[bool] = []

        def b_leads() -> bool:
            if b.elector.is_leader():
                overlap.append(a.elector.is_leader())
                return True
            return False

        await eventually(lambda: not a.elector.is_leader(), within_s=10)
        await eventually(lambda: a.changes == [True, False], within_s=20)
        reads = model_reads_by(fake, "replica-a")
        await eventually(b_leads, within_s=30)
        assert overlap == [False]  # never two leaders at once
        lease = fake.lease(LEASE, NAMESPACE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == b.elector.identity
        assert lease["spec"]["leaseTransitions"] == 1
        await asyncio.sleep(5 * RETRY_S)
        assert model_reads_by(fake, "replica-a") == reads  # a's loop stays stopped

        # a reaches the API again: it sees b's Lease and stays a follower.
        fake.refuse_leases.clear()
        await eventually(lambda: a.elector.holder == b.elector.identity, within_s=10)
        await asyncio.sleep(5 * RETRY_S)
        assert not a.elector.is_leader() and a.changes == [True, False]
        assert leaders(group) == [b]


async def test_a_leader_that_regains_the_lease_starts_its_loops_again(
    fake_api: FakeKubeApi, db: async_sessionmaker
) -> None:
    fake = fake_api
    durations = {"lease_duration_s": 4.0, "renew_deadline_s": 2.0, "retry_period_s": RETRY_S}
    async with replicas(fake, "replica-a", **durations) as (a,):
        a.start(models_informer(a.api_client, db).run)
        await eventually(a.elector.is_leader)
        fake.refuse_leases.add("*")
        await eventually(lambda: a.changes == [True, False], within_s=20)
        reads = model_reads_by(fake, "replica-a")
        await asyncio.sleep(5 * RETRY_S)
        assert model_reads_by(fake, "replica-a") == reads

        # The API answers again; the Lease still names a: it renews it and leads again.
        fake.refuse_leases.clear()
        await eventually(a.elector.is_leader, within_s=10)
        await eventually(lambda: model_reads_by(fake, "replica-a") > reads)
        assert a.changes == [True, False, True]
        lease = fake.lease(LEASE, NAMESPACE)
        assert lease is not None and lease["spec"]["leaseTransitions"] == 0


async def test_of_two_writes_from_the_same_read_the_second_loses_with_409(
    fake_api: FakeKubeApi,
) -> None:
    fake = fake_api
    async with replicas(fake, "replica-a", "replica-b") as (a, b):
        # Both read before either writes: the Lease is absent, both create, one gets 409.
        fake.lease_reads_together = threading.Barrier(2)
        won = await asyncio.gather(
            a.elector.try_acquire_or_renew(), b.elector.try_acquire_or_renew()
        )
        assert sorted(won) == [False, True]
        codes = [(r["method"], r["code"]) for r in fake.lease_requests]
        assert codes.count(("POST", 201)) == 1 and codes.count(("POST", 409)) == 1
        winner, loser = (a, b) if won[0] else (b, a)
        lease = fake.lease(LEASE, NAMESPACE)
        assert lease is not None and lease["spec"]["holderIdentity"] == winner.elector.identity

        # Released, both read it at one resourceVersion and replace it: one gets 409.
        fake.lease_reads_together = None
        assert not await loser.elector.release()  # not its Lease: nothing to release
        assert await winner.elector.release()
        fake.lease_reads_together = threading.Barrier(2)
        fake.lease_requests.clear()
        won = await asyncio.gather(
            a.elector.try_acquire_or_renew(), b.elector.try_acquire_or_renew()
        )
        assert sorted(won) == [False, True]
        codes = [(r["method"], r["code"]) for r in fake.lease_requests]
        assert codes.count(("PUT", 200)) == 1 and codes.count(("PUT", 409)) == 1

        # A replace carrying a stale resourceVersion is refused whatever it says.
        fake.lease_reads_together = None
        api = client.CoordinationV1Api(loser.api_client)
        stale = api.read_namespaced_lease(LEASE, NAMESPACE)
        holder = fake.lease(LEASE, NAMESPACE)
        assert holder is not None
        (current,) = [r for r in (a, b) if r.elector.identity == holder["spec"]["holderIdentity"]]
        assert await current.elector.try_acquire_or_renew()  # a renewal moves the version on
        assert stale.spec is not None
        stale.spec.holder_identity = "intruder"
        with pytest.raises(ApiException) as refused:
            api.replace_namespaced_lease(LEASE, NAMESPACE, stale)
        assert refused.value.status == 409
        after = fake.lease(LEASE, NAMESPACE)
        assert (
            after is not None
            and after["spec"]["holderIdentity"] == holder["spec"]["holderIdentity"]
        )


async def test_every_replica_applies_orchestrator_resources_but_only_the_leader_reports(
    fake_api: FakeKubeApi,
) -> None:
    fake = fake_api
    fake.apply(
        {
            "apiVersion": "ingestion.platform.io/v1alpha1",
            "kind": "Orchestrator",
            "metadata": {"name": "ingestion-manager"},
            "spec": {"type": "ingestion", "maxConcurrentRuns": 7},
        },
        NAMESPACE,
    )

    def manager() -> dict[str, Any]:
        return fake.get("ingestion-manager", NAMESPACE, "orchestrators")

    async with replicas(fake, "replica-a", "replica-b") as group:
        policies: dict[str, Policies] = {}
        tasks = []
        for replica in group:
            policies[replica.name] = Policies(OrchestratorsConfig())
            sync = Informer(
                replica.api_client,
                NAMESPACE,
                OrchestratorResources(policies[replica.name], OrchestratorsConfig()),
                is_leader=replica.elector.is_leader,
            )
            replica.start()  # no leader-only loop: the sync runs on every replica
            tasks.append(asyncio.create_task(sync.run()))
        try:
            await eventually(lambda: len(leaders(group)) == 1)
            (leader,) = leaders(group)
            await eventually(lambda: in_force(policies) == {7})
            await eventually(lambda: bool(manager().get("status")))
            fake.apply(
                {
                    "apiVersion": "ingestion.platform.io/v1alpha1",
                    "kind": "Orchestrator",
                    "metadata": {"name": "ingestion-manager"},
                    "spec": {"type": "ingestion", "maxConcurrentRuns": 9},
                },
                NAMESPACE,
            )
            await eventually(lambda: in_force(policies) == {9})

            def reported() -> bool:
                status = manager().get("status") or {}
                return (status.get("inForce") or {}).get("maxConcurrentRuns") == 9

            await eventually(reported)
            await asyncio.sleep(5 * 0.1)
            assert status_writers(fake) == {leader.name}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def in_force(policies: dict[str, Policies]) -> set[int]:
    """The ingestion manager's concurrency cap in force on each replica."""
    return {p.config.ingestion_manager.max_concurrent_runs for p in policies.values()}


def test_durations_that_would_let_two_replicas_lead_are_refused() -> None:
    api_client = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    try:
        with pytest.raises(ValueError, match="renew deadline"):
            LeaderElector(
                api_client, NAMESPACE, LEASE, "x", lease_duration_s=10, renew_deadline_s=10
            )
        with pytest.raises(ValueError, match="retry period"):
            LeaderElector(api_client, NAMESPACE, LEASE, "x", renew_deadline_s=2, retry_period_s=2)
    finally:
        api_client.close()


def leader_gauge(metrics: str) -> dict[str, float]:
    """controller_leader samples of a /metrics page, by identity."""
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'^controller_leader\{identity="([^"]*)"\} (\S+)$', metrics, re.M)
    }


async def gauge(http: httpx.AsyncClient) -> dict[str, float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return leader_gauge(response.text)


async def test_two_controller_apps_elect_one_leader_which_hands_over_at_shutdown(
    fake_api: FakeKubeApi, common_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two controllers as app.py wires them (lifespan, `background`, the Workflow watcher),
    both pointed at the fake through a kubeconfig: one leads and registers the resource."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake_api.url}}],
                "users": [{"name": "fake", "user": {"token": "test-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    resource = example("standard")
    resource["metadata"]["name"] = "leader-standard"
    resource["spec"]["definition"]["name"] = "leader_standard"
    fake_api.apply(resource)
    settings = {
        "kubernetes_watch": True,
        "kubernetes_namespace": NAMESPACE,
        "lease_duration_s": 30.0,
        "lease_renew_deadline_s": 3.0,
        "lease_retry_period_s": RETRY_S,
    }
    async with contextlib.AsyncExitStack() as stack:
        a_app, a_http = await stack.enter_async_context(
            controller(common_env, **settings, pod_name="controller-a")
        )
        async with controller(common_env, **settings, pod_name="controller-b") as (b_app, b_http):

            async def one_leader() -> bool:
                values = {**await gauge(a_http), **await gauge(b_http)}
                return sorted(values.values()) == [0.0, 1.0]

            await eventually(one_leader)
            a_gauge, b_gauge = await gauge(a_http), await gauge(b_http)
            [(a_identity, a_value)] = a_gauge.items()
            [(b_identity, _)] = b_gauge.items()
            assert a_identity.startswith("controller-a_") and b_identity.startswith("controller-b_")
            leader_identity = a_identity if a_value == 1.0 else b_identity
            lease = fake_api.lease("ingestion-controller", NAMESPACE)
            assert lease is not None and lease["spec"]["holderIdentity"] == leader_identity
            standard = lambda: fake_api.get("leader-standard", NAMESPACE, "workflows")  # noqa: E731
            await eventually(lambda: (ready(standard()) or {}).get("status") == "True")
            # One watcher lists and watches the Workflow resources: the leader's.
            workflow_lists = [
                r
                for r in fake_api.requests
                if r["method"] == "GET" and not r["watch"] and "/workflows" in r["path"]
            ]
            assert len(workflow_lists) == 1
            leading_app = a_app if a_value == 1.0 else b_app
            following_app = b_app if a_value == 1.0 else a_app
            assert leading_app.state.elector.is_leader()
            assert not following_app.state.elector.is_leader()
            if a_value == 1.0:
                await stack.aclose()  # controller-a shuts down: it releases the Lease
                await eventually(lambda: following_app.state.elector.is_leader(), within_s=10)
                assert await gauge(b_http) == {b_identity: 1.0}
        if a_value != 1.0:
            await eventually(lambda: a_app.state.elector.is_leader(), within_s=10)
            assert await gauge(a_http) == {a_identity: 1.0}
