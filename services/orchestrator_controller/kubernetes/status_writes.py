"""Writing a custom resource's status subresource, as every resource kind here does."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from services.orchestrator_controller.kubernetes.resources import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"


async def patch_status(
    api: client.CustomObjectsApi, namespace: str, plural: str, name: str, status: dict[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch `status` into the resource's status; the resource as the server now holds
    it, or None when it was deleted meanwhile (nothing to report to). Blocking client call,
    run in a thread."""
    try:
        written: Any = await asyncio.to_thread(
            api.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        return None
    return dict(written) if isinstance(written, dict) else {}
