"""Hardening finding 5 (work): a 1,000,000-item map_over wrote 998,808 step rows and a 1 MB
template rendered to 24 MB that was sent and stored. Both are now refused before any row is
written or any call made, with the setting named."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from services.workflow_engine.step_call import RunContext, StepLimits, run_step
from shared.agent_client import AgentClient
from shared.spec.models import WorkflowSpec
from shared.spec.templates import TemplateContext, TemplateError, render
from shared.state.steps import ClaimedStep


def _run(spec: dict[str, Any], inputs: dict[str, Any]) -> RunContext:
    return RunContext(
        spec=WorkflowSpec.model_validate(spec),
        inputs=inputs,
        trace_id="t",
        deadline_at=None,
        map_items={},
    )


def _claimed(step_id: str, map_index: int = -1) -> ClaimedStep:
    return ClaimedStep(
        id=1, run_id=uuid.uuid4(), step_id=step_id, role="action", map_index=map_index,
        agent="data-connector", action="noop", attempts=1, max_attempts=1, outputs={},
    )  # fmt: skip


class NoCalls:
    """An agent client that must never be reached: the caps act before any call."""

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an agent was called")


NO_CALLS = cast(AgentClient, NoCalls())

SPEC = {
    "name": "caps",
    "inputs": {"files": {"type": "array"}, "blob": {"type": "string"}},
    "steps": [
        {"id": "fan", "agent": "data-connector", "action": "noop", "map_over": "${inputs.files}",
         "params": {"file": "${item}"}},
        {"id": "big", "agent": "data-connector", "action": "noop",
         "params": {"text": "${inputs.blob}${inputs.blob}${inputs.blob}"}},
    ],
}  # fmt: skip


async def test_a_fan_out_over_the_cap_fails_before_any_child_exists() -> None:
    run = _run(SPEC, {"files": list(range(1001)), "blob": ""})
    result, latency = await run_step(
        _claimed("fan"), run, NO_CALLS, worker="w", limits=StepLimits(max_map_items=1000)
    )
    assert result.outcome == "failed" and result.map_items is None and latency is None
    assert result.error is not None and "ENGINE_MAX_MAP_ITEMS" in result.error["message"]
    fits = _run(SPEC, {"files": list(range(1000)), "blob": ""})
    ok, _ = await run_step(
        _claimed("fan"), fits, NO_CALLS, worker="w", limits=StepLimits(max_map_items=1000)
    )
    assert ok.outcome == "succeeded" and ok.map_items is not None and len(ok.map_items) == 1000


def test_the_default_cap_fits_a_bulk_file_of_100000_files() -> None:
    assert StepLimits().max_map_items >= 100_000


async def test_interpolated_text_over_the_cap_is_refused_and_nothing_is_sent() -> None:
    run = _run(SPEC, {"files": [], "blob": "x" * 400_000})
    result, _ = await run_step(
        _claimed("big"), run, NO_CALLS, worker="w", limits=StepLimits(max_rendered_chars=1_000_000)
    )
    assert result.outcome == "failed" and result.error is not None
    assert result.error["code"] == "template_error"
    assert "ENGINE_MAX_RENDERED_CHARS" in result.error["message"]


def test_whole_references_pass_values_along_without_counting() -> None:
    ctx = TemplateContext(inputs={"big": "y" * 50}, step_outputs={}, run_id="r", max_text_chars=10)
    assert render("${inputs.big}", ctx) == "y" * 50  # a stored value, passed by reference
    with pytest.raises(TemplateError, match="ENGINE_MAX_RENDERED_CHARS"):
        render("a ${inputs.big}", ctx)
