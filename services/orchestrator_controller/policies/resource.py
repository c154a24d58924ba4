"""Orchestrator resources and the orchestrators' configuration: one shape in two spellings.

An Orchestrator resource's `spec` is the configuration of one manager (`type` names it) in
camelCase: `maxConcurrentRuns` is `max_concurrent_runs`, with three names of their own
(`workflowKinds` is `kinds`, `hostRateWindowSeconds` is `host_rate_window_s`,
`pauseCooldownSeconds` is `pause_cooldown_s`). Every field but `type` is optional: a field
left out keeps the value `CONTROLLER_ORCHESTRATORS` or the defaults give it.

Nothing here talks to a cluster. `example_resources()` renders the chart's example
(helm/ingestion-platform/examples/platform/orchestrators.yaml) from the code's defaults:
`python -m services.orchestrator_controller.policies.resource` prints it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from services.orchestrator_controller.policies.config import OrchestratorsConfig

API_VERSION = "ingestion.platform.io/v1alpha1"
KIND = "Orchestrator"

# spec.type -> the manager it configures
MANAGER_OF_TYPE = {
    "api": "api_manager",
    "batch": "batch_manager",
    "file": "file_manager",
    "ingestion": "ingestion_manager",
    "stream": "stream_manager",
}
TYPE_OF_MANAGER = {manager: kind for kind, manager in MANAGER_OF_TYPE.items()}
_RENAMED = {
    "kinds": "workflowKinds",
    "host_rate_window_s": "hostRateWindowSeconds",
    "pause_cooldown_s": "pauseCooldownSeconds",
}


def resource_field(name: str) -> str:
    """The camelCase name of a configuration field in a resource's spec."""
    if name in _RENAMED:
        return _RENAMED[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def section_type(manager: str) -> type[BaseModel]:
    """The configuration model of one manager."""
    model: type[BaseModel] = OrchestratorsConfig.model_fields[manager].annotation  # type: ignore[assignment]
    return model


def resource_fields(manager: str) -> dict[str, str]:
    """A manager's configuration fields: camelCase resource name -> configuration name."""
    return {resource_field(name): name for name in section_type(manager).model_fields}


def all_resource_fields() -> dict[str, str]:
    """Every field an Orchestrator spec may carry besides `type` (any manager's)."""
    fields: dict[str, str] = {}
    for manager in MANAGER_OF_TYPE.values():
        fields.update(resource_fields(manager))
    return fields


def section_to_spec(manager: str, section: BaseModel) -> dict[str, Any]:
    """A manager's configuration in a resource's spelling (without `type`)."""
    values = section.model_dump(mode="json")
    return {resource_field(name): values[name] for name in section_type(manager).model_fields}


# Fields more than one manager has, described once for all of them.
_SHARED = {
    "paused": "admit no new run of the manager's kinds while true (a paused batch manager "
    "admits none at all); runs already waiting keep waiting and are admitted once unpaused",
    "workflowKinds": "the workflow kinds the manager governs (not batch: it sees every run); "
    "a kind belongs to one manager at most, kinds no manager claims go to the ingestion manager",
    "maxConcurrentRuns": "admitted-but-unfinished runs of the manager's kinds allowed at once "
    "(batch: of every kind)",
}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _field_schema(info: FieldInfo, description: str) -> dict[str, Any]:
    annotation = info.annotation
    item = getattr(annotation, "__args__", None)
    schema: dict[str, Any]
    if item:  # list[str], list[int]
        schema = {"type": "array", "description": description, "items": {}}
        schema["items"]["type"] = _JSON_TYPES[item[0]]
    else:
        schema = {"type": _JSON_TYPES[annotation], "description": description}  # type: ignore[index]
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge):
            schema["minimum"] = bound.ge
        elif isinstance(bound, annotated_types.Gt):
            schema["minimum"] = bound.gt
            schema["exclusiveMinimum"] = True
    return schema


def spec_properties() -> dict[str, dict[str, Any]]:
    """The CRD's schema of every field an Orchestrator spec may carry besides `type`, as the
    configuration models define them (the chart's CRD must say the same)."""
    properties: dict[str, dict[str, Any]] = {}
    owners: dict[str, list[str]] = {}
    infos: dict[str, FieldInfo] = {}
    for kind, manager in MANAGER_OF_TYPE.items():
        for name, info in section_type(manager).model_fields.items():
            key = resource_field(name)
            owners.setdefault(key, []).append(kind)
            infos.setdefault(key, info)
    for key, info in infos.items():
        description = _SHARED.get(key) or f"{info.description} ({' and '.join(owners[key])} only)"
        properties[key] = _field_schema(info, description)
    return properties


class InvalidOrchestratorSpec(ValueError):
    """A spec that cannot configure its manager (unknown type or field, a bad value)."""


def spec_overrides(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(manager, {configuration field: value}) a resource's spec sets; raises on a bad spec.

    Each value is checked on its own against the manager's model (types, bounds) here; whether
    the whole configuration holds together (a kind claimed twice) is the caller's to check.
    """
    kind = spec.get("type")
    if kind not in MANAGER_OF_TYPE:
        raise InvalidOrchestratorSpec(
            f"spec.type: {kind!r} is not one of {', '.join(MANAGER_OF_TYPE)}"
        )
    manager = MANAGER_OF_TYPE[str(kind)]
    fields = resource_fields(manager)
    unknown = sorted(key for key in spec if key != "type" and key not in fields)
    if unknown:
        raise InvalidOrchestratorSpec(
            "; ".join(f"spec.{key}: not a field of the {kind} manager" for key in unknown)
        )
    overrides = {fields[key]: value for key, value in spec.items() if key != "type"}
    try:
        section_type(manager).model_validate(overrides)
    except ValidationError as exc:
        raise InvalidOrchestratorSpec(validation_message(exc, manager)) from exc
    return manager, overrides


def validation_message(exc: ValidationError, manager: str | None = None) -> str:
    """A pydantic error in a resource's spelling (spec.maxConcurrentRuns: ...)."""
    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        if manager is None and loc and loc[0] in TYPE_OF_MANAGER:
            loc = loc[1:]
        where = ".".join(["spec", resource_field(loc[0]), *loc[1:]]) if loc else ""
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or str(exc)


def example_resources(config: OrchestratorsConfig | None = None) -> list[dict[str, Any]]:
    """The five Orchestrator resources spelling out `config` (the code's defaults)."""
    config = config or OrchestratorsConfig()
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": manager.replace("_", "-")},
            "spec": {"type": kind, **section_to_spec(manager, getattr(config, manager))},
        }
        for kind, manager in MANAGER_OF_TYPE.items()
    ]


EXAMPLE_HEADER = (
    "# The five run policies at the code's defaults (services/orchestrator_controller/policies/\n"
    "# config.py), generated by `python -m services.orchestrator_controller.policies.resource`;\n"
    "# tests/deploy/test_crds.py fails when they differ. Leave out a field to keep the value\n"
    "# CONTROLLER_ORCHESTRATORS gives it (or the default).\n"
)


def example_yaml() -> str:
    """The chart's examples/platform/orchestrators.yaml."""
    documents = yaml.safe_dump_all(example_resources(), sort_keys=False, explicit_start=False)
    return EXAMPLE_HEADER + documents


if __name__ == "__main__":
    sys.stdout.write(example_yaml())
