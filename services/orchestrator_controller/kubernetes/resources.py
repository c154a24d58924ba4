"""Pure translation between Workflow custom resources and workflow definitions.

Nothing here talks to a cluster: the watcher feeds resources in and sends the status bodies
these functions build back to the API server.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from shared.spec.models import WorkflowSpec

GROUP = "ingestion.platform.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Workflow"
PLURAL = "workflows"

READY = "Ready"
REASON_REGISTERED = "Registered"
REASON_INVALID = "InvalidSpec"
REASON_FAILED = "RegistrationFailed"

RUN_STATUSES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "COMPENSATING",
        "COMPENSATED",
        "COMPENSATION_FAILED",
    }
)


class _Aged(Protocol):
    @property
    def created(self) -> str: ...
    @property
    def name(self) -> str: ...


_A = TypeVar("_A", bound=_Aged)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_MESSAGE = 32768


class InvalidWorkflowResource(ValueError):
    """A Workflow resource that does not carry a usable definition."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ResourceRef:
    """Identity of one Workflow resource as seen at one resourceVersion."""

    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> ResourceRef:
        """Read the identity fields from a resource's metadata."""
        metadata = resource.get("metadata")
        if not isinstance(metadata, Mapping) or not metadata.get("name"):
            raise InvalidWorkflowResource("metadata.name: missing")
        return cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata["name"]),
            uid=str(metadata.get("uid") or ""),
            generation=int(metadata.get("generation") or 1),
        )


def resource_to_spec(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The definition a Workflow resource carries, with `name` and `version` filled in.

    `name` defaults to metadata.name and `version` to metadata.generation, so that every edit
    of a resource that does not pin a version registers a new version.
    """
    api_version = resource.get("apiVersion")
    if api_version is not None and str(api_version).split("/")[0] != GROUP:
        raise InvalidWorkflowResource(f"apiVersion: expected {API_VERSION}, got {api_version!r}")
    kind = resource.get("kind")
    if kind is not None and kind != KIND:
        raise InvalidWorkflowResource(f"kind: expected {KIND}, got {kind!r}")
    ref = ResourceRef.from_resource(resource)
    spec = resource.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidWorkflowResource("spec: missing")
    definition = spec.get("definition")
    if not isinstance(definition, Mapping):
        raise InvalidWorkflowResource("spec.definition: missing or not an object")
    result: dict[str, Any] = copy.deepcopy(dict(definition))
    result.setdefault("name", ref.name)
    result.setdefault("version", ref.generation)
    return result


def resource_to_workflow_spec(resource: Mapping[str, Any]) -> WorkflowSpec:
    """The validated WorkflowSpec of a resource (raises pydantic's ValidationError if invalid)."""
    from shared.spec.models import WorkflowSpec

    return WorkflowSpec.model_validate(resource_to_spec(resource))


def spec_to_resource(
    spec: Mapping[str, Any], *, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """A Workflow resource carrying `spec` (the inverse of resource_to_spec)."""
    resource_name = name or str(spec.get("name", "")).replace("_", "-")
    if not _DNS_LABEL.match(resource_name) or len(resource_name) > 63:
        raise InvalidWorkflowResource(f"metadata.name: {resource_name!r} is not a DNS-1123 label")
    metadata: dict[str, Any] = {"name": resource_name}
    if namespace:
        metadata["namespace"] = namespace
    if "kind" in spec:
        metadata["labels"] = {f"{GROUP}/workflow-kind": str(spec["kind"])}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {"definition": copy.deepcopy(dict(spec))},
    }


def spec_error_message(exc: BaseException) -> str | None:
    """Why a spec was refused, or None when the failure is not the spec's fault (retry it).

    Refusals are errors following AppError's protocol with `retryable` False (a `.message`
    and a `.retryable`), the spec validator's errors (ValueError with `.field`) and pydantic's
    ValidationError. A bare `.message` is not enough: database drivers' errors carry one too.
    """
    if getattr(exc, "retryable", False):
        return None
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        parts = []
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
        return _truncate("; ".join(parts) or str(exc))
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message and hasattr(exc, "retryable"):
        return _truncate(message)
    if isinstance(exc, ValueError) and hasattr(exc, "field"):
        return _truncate(str(exc))
    return None


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def rfc3339(moment: datetime) -> str:
    """A timestamp as Kubernetes writes them: UTC, seconds, trailing Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(
    *, status: bool | None, reason: str, message: str, generation: int, now: datetime
) -> dict[str, Any]:
    """A Ready condition (status None means Unknown)."""
    return {
        "type": READY,
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": reason,
        "message": _truncate(message),
        "observedGeneration": generation,
        "lastTransitionTime": rfc3339(now),
    }


def merge_conditions(
    existing: list[Mapping[str, Any]] | None, new: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Replace the condition of new's type; keep its transition time when status is unchanged."""
    merged: list[dict[str, Any]] = []
    replaced = False
    for condition in existing or []:
        if condition.get("type") == new["type"]:
            updated = dict(new)
            if condition.get("status") == new["status"] and condition.get("lastTransitionTime"):
                updated["lastTransitionTime"] = condition["lastTransitionTime"]
            merged.append(updated)
            replaced = True
        else:
            merged.append(dict(condition))
    if not replaced:
        merged.append(dict(new))
    return merged


def registration_status(
    resource: Mapping[str, Any],
    condition: Mapping[str, Any],
    *,
    workflow_name: str | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """The status fields to write after trying to register a resource's definition."""
    current = resource.get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": condition["observedGeneration"],
        "conditions": merge_conditions(current.get("conditions"), condition),
    }
    if workflow_name is not None:
        status["workflowName"] = workflow_name
    if version is not None:
        status["registeredVersion"] = version
    return status


def status_differs(resource: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change the resource's status (ignoring timestamps)."""
    current = resource.get("status") or {}
    for key, value in desired.items():
        if key == "conditions":
            if _strip_times(current.get("conditions")) != _strip_times(value):
                return True
        elif current.get(key) != value:
            return True
    return False


def _strip_times(conditions: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in (conditions or [])]


def run_to_status(run: Mapping[str, Any]) -> dict[str, Any]:
    """status.lastRun from a run record (snake_case or camelCase keys, datetimes or strings)."""
    run_id = run.get("run_id", run.get("runId", run.get("id")))
    if run_id is None:
        raise ValueError("run record has no run_id")
    status = str(run.get("status", "")).upper()
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {run.get('status')!r}")
    result: dict[str, Any] = {"runId": str(run_id), "status": status}
    for target, keys in (
        ("startedAt", ("started_at", "startedAt")),
        ("finishedAt", ("finished_at", "finishedAt", "ended_at")),
    ):
        value = next((run[k] for k in keys if run.get(k) is not None), None)
        if value is not None:
            result[target] = rfc3339(value) if isinstance(value, datetime) else str(value)
    message = run.get("error") or run.get("message")
    if message:
        result["message"] = _truncate(str(message))
    return result


def oldest_per(candidates: Iterable[_A], subject: Callable[[_A], str]) -> dict[str, _A]:
    """For each subject (a model, an agent, a manager) the oldest resource naming it, by
    creationTimestamp then name: it is the one that applies, the others are a Conflict."""
    winners: dict[str, _A] = {}
    for candidate in sorted(candidates, key=lambda c: (c.created, c.name)):
        winners.setdefault(subject(candidate), candidate)
    return winners
