"""Every refusal of the spec validator names the field at fault."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from shared.spec.catalog import AGENT_ACTIONS
from shared.spec.loader import builtin_specs
from shared.spec.models import AGENTS_CONTEXT, RetryPolicy, WorkflowSpec
from shared.spec.templates import TemplateContext, TemplateError, render


def spec(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "wf", "steps": list(steps), **extra}


def step(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "agent": "data-connector", "action": "noop", **extra}


def refusal(body: dict[str, Any], agents: Any = AGENT_ACTIONS) -> str:
    with pytest.raises(ValidationError) as caught:
        WorkflowSpec.model_validate(body, context={AGENTS_CONTEXT: agents})
    return str(caught.value)


def test_builtin_workflows_are_valid() -> None:
    names = {s.name for s in builtin_specs()}
    assert "test" in names


def test_cycle_is_refused_with_the_path() -> None:
    message = refusal(
        spec(step("a", depends_on=["c"]), step("b", depends_on=["a"]), step("c", depends_on=["b"]))
    )
    # The path follows depends_on from the first step of the cycle in spec order.
    assert "dependency cycle: a -> c -> b -> a" in message


def test_unknown_dependency_names_the_field() -> None:
    message = refusal(spec(step("a"), step("b", depends_on=["a", "nope"])))
    assert "steps[1].depends_on[1]" in message and "'nope'" in message


def test_duplicate_step_id() -> None:
    assert "steps[1].id" in refusal(spec(step("a"), step("a")))


def test_unknown_agent_and_action() -> None:
    assert "steps[0].agent" in refusal(spec(step("a", agent="data-teleporter")))
    message = refusal(spec(step("a", action="teleport")))
    assert "steps[0].action" in message and "test_connection" in message


def test_a_catalog_with_a_registered_agent_accepts_its_actions_only() -> None:
    catalog = {**AGENT_ACTIONS, "data-quality": frozenset({"check"})}
    quality = step("a", agent="data-quality", action="check")
    WorkflowSpec.model_validate(spec(quality), context={AGENTS_CONTEXT: catalog})
    assert "steps[0].agent" in refusal(spec(quality))  # the built-ins alone do not know it
    message = refusal(spec({**quality, "action": "teleport"}), catalog)
    assert "steps[0].action" in message and "check" in message


def test_a_stored_spec_parses_without_a_catalog() -> None:
    # Runs keep the spec they started with, whatever is registered now.
    parsed = WorkflowSpec.model_validate(spec(step("a", agent="gone-agent", action="x")))
    assert parsed.steps[0].agent == "gone-agent"


def test_reference_to_a_step_that_is_not_upstream() -> None:
    message = refusal(spec(step("a"), step("b", params={"x": "${steps.a.output.rows}"})))
    assert "steps[1].params" in message and "not upstream" in message


def test_reference_to_transitive_upstream_is_accepted() -> None:
    WorkflowSpec.model_validate(
        spec(
            step("a"),
            step("b", depends_on=["a"]),
            step("c", depends_on=["b"], params={"x": "${steps.a.output.rows}"}),
        )
    )


def test_undeclared_input_and_bad_template() -> None:
    assert "is not a declared input" in refusal(spec(step("a", params={"x": "${inputs.url}"})))
    assert "unterminated" in refusal(spec(step("a", params={"x": "${inputs.url"})))
    assert "unknown reference root" in refusal(spec(step("a", params={"x": "${env.HOME}"})))


def test_item_only_in_map_steps() -> None:
    assert "${item}" in refusal(spec(step("a", params={"x": "${item}"})))
    WorkflowSpec.model_validate(
        spec(
            step("a", map_over="${inputs.files}", params={"x": "${item}"}),
            inputs={"files": {"type": "array"}},
        )
    )


def test_extra_fields_are_refused() -> None:
    assert "teleport" in refusal(spec(step("a", teleport=True)))


def test_render_keeps_types_and_interpolates() -> None:
    ctx = TemplateContext(
        inputs={"n": 3, "name": "x"},
        step_outputs={"a": {"files": [{"uri": "f1"}, {"uri": "f2"}]}},
        run_id="r1",
    )
    assert render("${inputs.n}", ctx) == 3
    assert render("${steps.a.output.files.1.uri}", ctx) == "f2"
    assert render("run ${run.id}: ${inputs.name}/${inputs.n}", ctx) == "run r1: x/3"
    assert render({"k": ["${steps.a.output.files}"]}, ctx) == {
        "k": [[{"uri": "f1"}, {"uri": "f2"}]]
    }
    with pytest.raises(TemplateError):
        render("${steps.a.output.missing}", ctx)


def test_retry_delay_grows_caps_and_jitters() -> None:
    policy = RetryPolicy(initial_interval_s=1, backoff_coefficient=2, max_interval_s=5, jitter=0)
    assert [policy.delay_before(n) for n in (2, 3, 4, 5)] == [1, 2, 4, 5]
    jittery = RetryPolicy(initial_interval_s=10, jitter=0.5)
    delays = {round(jittery.delay_before(2, random.Random(seed)), 3) for seed in range(20)}
    assert len(delays) > 10 and all(5 <= d <= 15 for d in delays)
