"""`make demo` ends with the run's DAG as text: one line per layer, each step with its state
and what it waited for."""

from __future__ import annotations

from launcher.demo import dag_text
from shared.spec.loader import builtin_specs


def test_a_diamond_prints_layer_by_layer() -> None:
    steps = [
        {"step_id": "d", "depends_on": ["b", "c"], "status": "PENDING"},
        {"step_id": "c", "depends_on": ["a"], "status": "FAILED"},
        {"step_id": "b", "depends_on": ["a"], "status": "SUCCEEDED"},
        {"step_id": "a", "depends_on": [], "status": "SUCCEEDED"},
        {"step_id": "a", "role": "compensation", "depends_on": [], "status": "SUCCEEDED"},
    ]
    assert dag_text(steps) == [
        "  1. a [SUCCEEDED]",
        "  2. b [SUCCEEDED] <- a   c [FAILED] <- a",
        "  3. d [PENDING] <- b, c",
    ]


def test_the_demo_workflow_has_every_step_once() -> None:
    spec = next(s for s in builtin_specs() if s.name == "test")
    steps = [
        {"step_id": s.id, "depends_on": list(s.depends_on), "status": "SUCCEEDED"}
        for s in spec.steps
    ]
    text = "\n".join(dag_text(steps))
    assert all(text.count(f"{s.id} [") == 1 for s in spec.steps)
