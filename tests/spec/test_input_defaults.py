"""An input's default may name another input (`${inputs.dataset}`): checked with the spec, bound
per run to the other input's value (how `standard` keys its cursor by the dataset)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.orchestrator_controller.runs.inputs import bind_inputs
from shared.spec.models import WorkflowSpec


def spec_with(inputs: dict[str, Any]) -> dict[str, Any]:
    step = {"id": "a", "agent": "data-connector", "action": "noop", "params": {}}
    return {"name": "wf", "inputs": inputs, "steps": [step]}


KEYED = {
    "dataset": {"type": "string", "required": True},
    "state_key": {"type": "string", "default": "${inputs.dataset}"},
}


def test_a_default_naming_another_input_takes_its_value() -> None:
    spec = WorkflowSpec.model_validate(spec_with(KEYED))
    assert bind_inputs(spec, {"dataset": "orders"})["state_key"] == "orders"
    assert bind_inputs(spec, {"dataset": "orders", "state_key": "crm"})["state_key"] == "crm"
    assert bind_inputs(spec, {"dataset": "orders", "state_key": None})["state_key"] is None
    # A form prefilled with the defaults sends the default's text back: still the default.
    echoed = bind_inputs(spec, {"dataset": "orders", "state_key": "${inputs.dataset}"})
    assert echoed["state_key"] == "orders"
    # A defaulted input can be named too.
    chained = WorkflowSpec.model_validate(
        spec_with({"a": {"default": "x"}, "b": {"default": "${inputs.a}"}})
    )
    assert bind_inputs(chained, {})["b"] == "x"


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ({"k": {"default": "${inputs.nope}"}}, "not another declared input"),
        ({"k": {"default": "${inputs.k}"}}, "not another declared input"),
        ({"d": {}, "k": {"default": "key-${inputs.d}"}}, "exactly ${inputs.<name>}"),
        ({"d": {}, "k": {"default": "${steps.a.output}"}}, "exactly ${inputs.<name>}"),
        ({"d": {}, "k": {"default": "${inputs.d.part}"}}, "exactly ${inputs.<name>}"),
        (
            {"a": {}, "b": {"default": "${inputs.a}"}, "c": {"default": "${inputs.b}"}},
            "defaults to a reference itself",
        ),
    ],
)
def test_other_references_in_defaults_are_refused(inputs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkflowSpec.model_validate(spec_with(inputs))
    message = str(caught.value)
    assert ".default" in message and reason in message
