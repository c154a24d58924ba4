"""A step's time limit from a run's input (`timeout_from`): checked where the spec enters and
where the run is submitted, so a bad limit is refused naming its field, never met mid-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.orchestrator_controller.runs.inputs import bind_inputs
from shared.errors import ValidationFailed
from shared.spec.models import WorkflowSpec

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _spec(limit_input: dict[str, Any] | None, **step: Any) -> WorkflowSpec:
    inputs = {"limit": limit_input} if limit_input is not None else {}
    body = {"id": "a", "agent": "data-collector", "action": "collect", "timeout_s": 30, **step}
    return WorkflowSpec.model_validate({"name": "limits", "inputs": inputs, "steps": [body]})


def test_the_input_gives_the_limit_and_its_absence_leaves_the_spec_s() -> None:
    spec = _spec({"type": "number", "default": None}, timeout_from="limit")
    step = spec.step("a")
    assert step.time_limit(bind_inputs(spec, {"limit": 2.5})) == 2.5
    assert step.time_limit(bind_inputs(spec, {})) == 30.0
    assert _spec(None).step("a").time_limit({}) == 30.0


@pytest.mark.parametrize(
    ("limit_input", "complaint"),
    [
        (None, r"steps\[0\]\.timeout_from: 'limit' is not a declared input"),
        ({"type": "string"}, r"steps\[0\]\.timeout_from: input 'limit' is not a number"),
        ({"type": "number", "default": 0}, r"inputs\.limit\.default: a step time limit"),
        ({"type": "integer", "default": 90000}, r"inputs\.limit\.default: a step time limit"),
    ],
)
def test_a_spec_whose_limit_input_cannot_give_one_is_refused(
    limit_input: dict[str, Any] | None, complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        _spec(limit_input, timeout_from="limit")


@pytest.mark.parametrize("value", [0, -1, 86401, True])
def test_a_run_with_a_limit_out_of_bounds_is_refused_naming_the_input(value: object) -> None:
    spec = _spec({"type": "number", "default": None}, timeout_from="limit")
    with pytest.raises(ValidationFailed, match=r"^inputs\.limit: ") as caught:
        bind_inputs(spec, {"limit": value})
    assert caught.value.details[0]["field"] == "inputs.limit"


def test_standard_takes_a_time_limit_per_step() -> None:
    spec = WorkflowSpec.model_validate(yaml.safe_load((WORKFLOWS / "standard.yaml").read_text()))
    bound = bind_inputs(
        spec,
        {"source": {"kind": "file", "url": "/x"}, "dataset": "d", "primary_key": ["id"],
         "collect_timeout_s": 7200, "merge_timeout_s": 60},
    )  # fmt: skip
    limits = {s.id: s.time_limit(bound) for s in spec.steps if s.timeout_from}
    assert limits == {"collect": 7200.0, "convert": 1800.0, "quality": 1800.0, "merge": 60.0}
