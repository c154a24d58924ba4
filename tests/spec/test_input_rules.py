"""Input rules a workflow declares (`enum`, `required_if`): a run that breaks one is refused at
submission with a 422 naming the input, not failed at its merge step an hour later."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from services.orchestrator_controller.runs.inputs import bind_inputs
from shared.errors import ValidationFailed
from shared.spec.models import WorkflowSpec

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
INGESTION = ["standard", "bulk_file", "resilient_fetch", "secure_api"]


def _spec(name: str) -> WorkflowSpec:
    return WorkflowSpec.model_validate(yaml.safe_load((WORKFLOWS / f"{name}.yaml").read_text()))


def _required(spec: WorkflowSpec) -> dict[str, object]:
    fillers: dict[str, object] = {"string": "x", "object": {}, "array": ["id"], "any": "x"}
    return {n: fillers[i.type] for n, i in spec.inputs.items() if i.required}


@pytest.mark.parametrize("name", INGESTION)
def test_a_merge_without_a_primary_key_is_refused_naming_the_input(name: str) -> None:
    spec = _spec(name)
    base = _required(spec)
    with pytest.raises(ValidationFailed, match=r"^inputs\.primary_key: required") as caught:
        bind_inputs(spec, {**base, "write_disposition": "merge", "primary_key": []})
    assert caught.value.details == [{"field": "inputs.primary_key", "message": "required"}]
    # append needs no key.
    bound = bind_inputs(spec, {**base, "write_disposition": "append", "primary_key": []})
    assert bound["write_disposition"] == "append"


@pytest.mark.parametrize("name", INGESTION)
def test_dispositions_and_strategies_outside_their_enum_are_refused(name: str) -> None:
    spec = _spec(name)
    base = _required(spec)
    with pytest.raises(ValidationFailed, match=r"^inputs\.write_disposition: 'upsert' is not"):
        bind_inputs(spec, {**base, "write_disposition": "upsert"})
    with pytest.raises(ValidationFailed, match=r"^inputs\.merge_strategy: 'scd3' is not"):
        bind_inputs(spec, {**base, "merge_strategy": "scd3"})
    assert bind_inputs(spec, {**base, "merge_strategy": "scd2"})["merge_strategy"] == "scd2"


def test_a_rule_naming_an_undeclared_input_or_a_default_outside_the_enum_is_a_spec_error() -> None:
    step = {"id": "a", "agent": "data-connector", "action": "noop"}
    with pytest.raises(ValidationError, match="required_if"):
        WorkflowSpec.model_validate(
            {"name": "wf", "inputs": {"k": {"required_if": {"nope": [1]}}}, "steps": [step]}
        )
    with pytest.raises(ValidationError, match="enum"):
        WorkflowSpec.model_validate(
            {"name": "wf", "inputs": {"k": {"enum": ["a"], "default": "b"}}, "steps": [step]}
        )
