"""Checking a run's inputs against the inputs its workflow declares."""

from __future__ import annotations

from typing import Any

from shared.errors import ValidationFailed
from shared.spec.models import InputSpec, WorkflowSpec, time_limit_refusal
from shared.spec.templates import input_reference

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _type_ok(declared: InputSpec, value: Any) -> bool:
    if declared.type == "any":
        return True
    if isinstance(value, bool) and declared.type in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[declared.type])


def bind_inputs(spec: WorkflowSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Given inputs plus defaults; 422 naming `inputs.<name>` for unknown, missing or mistyped."""
    unknown = sorted(set(given) - set(spec.inputs))
    if unknown:
        raise ValidationFailed(
            f"inputs.{unknown[0]}: workflow {spec.name!r} declares no such input "
            f"(declared: {', '.join(sorted(spec.inputs)) or 'none'})",
            details=[{"field": f"inputs.{name}", "message": "unknown input"} for name in unknown],
        )
    bound: dict[str, Any] = {}
    for name, declared in spec.inputs.items():
        other = input_reference(declared.default)
        # A default `${inputs.<other>}` (checked with the spec) takes the other's value, also
        # when a client sends the default's own text back (a form prefilled with defaults).
        if other is not None and given.get(name, declared.default) == declared.default:
            value = given.get(other, spec.inputs[other].default)
        elif name in given:
            value = given[name]
        elif declared.required:
            raise ValidationFailed(
                f"inputs.{name}: required by workflow {spec.name!r}",
                details=[{"field": f"inputs.{name}", "message": "required"}],
            )
        else:
            value = declared.default
        if value is not None and not _type_ok(declared, value):
            raise ValidationFailed(
                f"inputs.{name}: expected {declared.type}, got {type(value).__name__}",
                details=[{"field": f"inputs.{name}", "message": f"expected {declared.type}"}],
            )
        if declared.enum is not None and value is not None and value not in declared.enum:
            raise ValidationFailed(
                f"inputs.{name}: {value!r} is not one of {', '.join(map(repr, declared.enum))}",
                details=[{"field": f"inputs.{name}", "message": "not an allowed value"}],
            )
        bound[name] = value
    for name, declared in spec.inputs.items():
        for other, values in declared.required_if.items():
            if bound.get(other) in values and bound[name] in (None, [], "", {}):
                raise ValidationFailed(
                    f"inputs.{name}: required (non-empty) when inputs.{other} is {bound[other]!r}",
                    details=[{"field": f"inputs.{name}", "message": "required"}],
                )
    for step in spec.steps:
        limit = step.timeout_from
        if limit is None or bound[limit] is None:
            continue
        if (why := time_limit_refusal(bound[limit])) is not None:
            raise ValidationFailed(
                f"inputs.{limit}: step {step.id!r}'s time limit: {why}",
                details=[{"field": f"inputs.{limit}", "message": why}],
            )
    return bound
