"""What the controller_k8s tests share besides fixtures: running informers, reading statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from services.orchestrator_controller.kubernetes.informer import Informer
from tests import polling

from .fake_kube_api import FakeKubeApi

NAMESPACE = "ingest"
# How long a change may take to show: far less than any resync the tests configure.
WITHIN_S = 10.0


@asynccontextmanager
async def running(*informers: Informer) -> AsyncIterator[None]:
    """The informers' loops in the background (list, watch, resync), stopped on the way out."""
    for informer in informers:
        await informer.start()
    try:
        yield
    finally:
        for informer in informers:
            await informer.stop()


def condition(resource: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    """The resource's condition of that type."""
    (found,) = [c for c in resource["status"]["conditions"] if c["type"] == kind]
    return dict(found)


def reported(fake: FakeKubeApi, *names: str, plural: str | None = None) -> Callable[[], bool]:
    """Whether each resource's status speaks of its current generation."""

    def check() -> bool:
        for name in names:
            resource = fake.get(name, NAMESPACE, plural)
            conditions = (resource.get("status") or {}).get("conditions") or []
            generation = resource["metadata"]["generation"]
            if not any(c.get("observedGeneration") == generation for c in conditions):
                return False
        return True

    return check


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait (WITHIN_S at most) until `check` holds; the failure names `what`."""
    await polling.eventually(check, WITHIN_S, what)
