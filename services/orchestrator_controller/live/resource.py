"""Config resources and the controller's live settings: one shape in two spellings.

A Config resource's `spec` is the live settings (`LiveSettings`) in camelCase: `logLevel`,
`scheduleTickSeconds` (`schedule_tick_s`: a trailing `_s` is spelled `Seconds`),
`maxSpecBytes`... Every field is optional: one left out keeps the value the process's settings
give it (the environment, else the code's default). A field naming a setting read only at
start (`databaseUrl`, `port`, ...) is refused as needing a restart, any other unknown field as
not a setting.

Nothing here talks to a cluster. `example_yaml()` renders the chart's example
(helm/ingestion-platform/examples/platform/config.yaml) from the code's defaults:
`python -m services.orchestrator_controller.live.resource` prints it.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Mapping
from typing import Any

import annotated_types
import yaml
from pydantic import ValidationError

from services.orchestrator_controller.live.settings import (
    LiveSettings,
    environment_variable,
    restart_required_fields,
)
from services.orchestrator_controller.settings import ControllerSettings

API_VERSION = "ingestion.platform.io/v1alpha1"
KIND = "Config"
REASON_RESTART = "RestartRequired"
REASON_INVALID = "InvalidSpec"
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def resource_field(name: str) -> str:
    """The camelCase name of a settings field in a Config spec (`_s` spelled `Seconds`)."""
    head, *rest = name.split("_")
    parts = [head, *("Seconds" if part == "s" else part.capitalize() for part in rest)]
    return "".join(parts)


def live_fields() -> dict[str, str]:
    """The live settings: camelCase resource name -> settings name."""
    return {resource_field(name): name for name in LiveSettings.model_fields}


def restart_fields() -> dict[str, str]:
    """The settings that need a restart: camelCase resource name -> settings name."""
    return {resource_field(name): name for name in restart_required_fields(ControllerSettings)}


def to_spec(live: LiveSettings) -> dict[str, Any]:
    """Live settings in a resource's spelling."""
    values = live.model_dump(mode="json")
    return {resource_field(name): values[name] for name in LiveSettings.model_fields}


def _variable(name: str) -> str:
    return environment_variable(ControllerSettings, name)


class InvalidConfigSpec(ValueError):
    """A spec that cannot be put in force; `reason` is the Ready condition's reason."""

    def __init__(self, message: str, reason: str = REASON_INVALID) -> None:
        super().__init__(message)
        self.reason = reason


def spec_overrides(spec: Mapping[str, Any]) -> dict[str, Any]:
    """{settings field: value} a Config spec sets; raises InvalidConfigSpec on a bad spec.

    A field that needs a restart is refused first (reason RestartRequired), then unknown
    fields and bad values (InvalidSpec): nothing of a refused spec is applied.
    """
    live, restart = live_fields(), restart_fields()
    needs_restart = [key for key in spec if key in restart and restart[key] != "orchestrators"]
    if needs_restart:
        raise InvalidConfigSpec(
            "; ".join(
                f"spec.{key}: needs a restart ({_variable(restart[key])} is read only when "
                "the controller starts: set it in the controller's environment and restart it)"
                for key in needs_restart
            ),
            REASON_RESTART,
        )
    problems = []
    for key in spec:
        if key in live:
            continue
        if restart.get(key) == "orchestrators":
            problems.append(
                f"spec.{key}: the managers are configured live by Orchestrator resources"
            )
        else:
            problems.append(
                f"spec.{key}: not a live setting of the controller (those are {', '.join(live)})"
            )
    if problems:
        raise InvalidConfigSpec("; ".join(problems))
    overrides = {live[key]: value for key, value in spec.items()}
    try:
        LiveSettings.model_validate(overrides)
    except ValidationError as exc:
        raise InvalidConfigSpec(validation_message(exc)) from exc
    return overrides


def validation_message(exc: ValidationError) -> str:
    """A pydantic error in a resource's spelling (spec.scheduleTickSeconds: ...)."""
    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(["spec", resource_field(loc[0]), *loc[1:]]) if loc else ""
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or str(exc)


def spec_properties() -> dict[str, dict[str, Any]]:
    """The CRD's schema of every field a Config spec may carry, as LiveSettings defines them
    (the chart's CRD must say the same)."""
    properties: dict[str, dict[str, Any]] = {}
    for name, info in LiveSettings.model_fields.items():
        key = resource_field(name)
        description = f"{info.description} (else {_variable(name)})"
        annotation = info.annotation
        schema: dict[str, Any]
        if typing.get_origin(annotation) is typing.Literal:
            schema = {
                "type": "string",
                "description": description,
                "enum": list(typing.get_args(annotation)),
            }
        else:
            schema = {"type": _JSON_TYPES[annotation], "description": description}  # type: ignore[index]
        for bound in info.metadata:
            if isinstance(bound, annotated_types.Ge):
                schema["minimum"] = bound.ge
            elif isinstance(bound, annotated_types.Gt):
                schema["minimum"] = bound.gt
                schema["exclusiveMinimum"] = True
            elif isinstance(bound, annotated_types.Le):
                schema["maximum"] = bound.le
        properties[key] = schema
    return properties


def example_resource(live: LiveSettings | None = None) -> dict[str, Any]:
    """The Config resource spelling out `live` (the code's defaults)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "platform"},
        "spec": to_spec(live or LiveSettings()),
    }


EXAMPLE_HEADER = (
    "# The controller's live settings at the code's defaults\n"
    "# (services/orchestrator_controller/live/settings.py), generated by\n"
    "# `python -m services.orchestrator_controller.live.resource`; tests/deploy/test_crds.py\n"
    "# fails when they differ. Leave out a field to keep the value the controller's environment\n"
    "# gives it (or the default); settings read only at start (URLs, ports, keys, the\n"
    "# namespace...) are refused here: they need a restart.\n"
)


def example_yaml() -> str:
    """The chart's examples/platform/config.yaml."""
    return EXAMPLE_HEADER + yaml.safe_dump(example_resource(), sort_keys=False)


if __name__ == "__main__":
    sys.stdout.write(example_yaml())
