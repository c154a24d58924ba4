"""The pure translation between Workflow resources and workflow definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from services.orchestrator_controller.kubernetes import (
    InvalidWorkflowResource,
    resource_to_spec,
    resource_to_workflow_spec,
    run_to_status,
    spec_error_message,
    spec_to_resource,
)
from services.orchestrator_controller.kubernetes.resources import (
    merge_conditions,
    ready_condition,
    registration_status,
    status_differs,
)
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.spec.catalog import AGENT_ACTIONS
from shared.spec.models import AGENTS_CONTEXT, WorkflowSpec
from shared.spec.validation import SpecError

EXAMPLES = Path(__file__).resolve().parents[2] / "helm/ingestion-platform/examples/workflows"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def resource(definition: dict[str, Any], *, name: str = "orders", generation: int = 3) -> dict:
    return {
        "apiVersion": "ingestion.platform.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "ingest", "uid": "u1", "generation": generation},
        "spec": {"definition": definition},
    }


STEPS = [{"id": "collect", "agent": "data-collector", "action": "collect"}]


def test_name_and_version_default_to_metadata() -> None:
    spec = resource_to_spec(resource({"steps": STEPS}))
    assert spec == {"steps": STEPS, "name": "orders", "version": 3}


def test_explicit_name_and_version_win() -> None:
    spec = resource_to_spec(resource({"name": "orders_v", "version": 7, "steps": STEPS}))
    assert (spec["name"], spec["version"]) == ("orders_v", 7)


def test_the_resource_is_not_mutated() -> None:
    res = resource({"steps": STEPS})
    spec = resource_to_spec(res)
    spec["steps"][0]["id"] = "changed"
    assert res["spec"]["definition"] == {"steps": STEPS}
    assert STEPS[0]["id"] == "collect"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("spec"), "spec"),
        (lambda r: r["spec"].pop("definition"), "spec.definition"),
        (lambda r: r["spec"].update(definition=["not", "a", "map"]), "spec.definition"),
        (lambda r: r["metadata"].pop("name"), "metadata.name"),
        (lambda r: r.update(kind="Model"), "kind"),
        (lambda r: r.update(apiVersion="other.io/v1"), "apiVersion"),
    ],
)
def test_malformed_resources_are_refused_naming_the_field(mutate: Any, field: str) -> None:
    res = resource({"steps": STEPS})
    mutate(res)
    with pytest.raises(InvalidWorkflowResource) as info:
        resource_to_spec(res)
    assert info.value.message.startswith(field + ":")
    assert spec_error_message(info.value) == info.value.message


OWN_KIND = {"train_models": "training", "maintain_dataset": "maintenance"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_becomes_a_valid_workflow_spec(path: Path) -> None:
    spec = resource_to_workflow_spec(yaml.safe_load(path.read_text()))
    assert isinstance(spec, WorkflowSpec)
    assert spec.name == path.stem
    # The seed workflows are named after their kind, but for these two.
    assert spec.kind == OWN_KIND.get(spec.name, path.stem)


def test_spec_to_resource_round_trips() -> None:
    spec = yaml.safe_load((EXAMPLES / "secure_api.yaml").read_text())["spec"]["definition"]
    res = spec_to_resource(spec, namespace="ingest")
    assert res["metadata"] == {
        "name": "secure-api",
        "namespace": "ingest",
        "labels": {"ingestion.platform.io/workflow-kind": "secure_api"},
    }
    assert resource_to_spec(res) == spec


def test_spec_to_resource_refuses_a_name_kubernetes_would_refuse() -> None:
    with pytest.raises(InvalidWorkflowResource):
        spec_to_resource({"name": "x" * 64, "steps": STEPS})


def test_refusals_and_transient_failures_are_told_apart() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        WorkflowSpec.model_validate({"name": "Bad Name", "steps": STEPS})
    message = spec_error_message(info.value)
    assert message is not None and message.startswith("name:")

    with pytest.raises(pydantic.ValidationError) as info:
        WorkflowSpec.model_validate(
            {"name": "w", "steps": [{"id": "a", "agent": "data-merger", "action": "collect"}]},
            context={AGENTS_CONTEXT: AGENT_ACTIONS},
        )
    message = spec_error_message(info.value)
    assert message is not None and "steps[0].action" in message

    assert spec_error_message(ValidationFailed("steps: empty")) == "steps: empty"
    assert spec_error_message(SpecError("steps[0].id", "duplicate")) == "steps[0].id: duplicate"
    assert spec_error_message(ServiceUnavailable("db down", retryable=True)) is None
    assert spec_error_message(ConnectionError("reset")) is None
    assert spec_error_message(RuntimeError("boom")) is None

    class DriverError(Exception):  # like asyncpg's errors: a .message but no AppError protocol
        message = "connection to server was lost"

    assert spec_error_message(DriverError()) is None


def test_long_messages_fit_the_condition_field() -> None:
    message = spec_error_message(ValidationFailed("x" * 40000))
    assert message is not None and len(message) == 32768 and message.endswith("...")


def test_merge_conditions_keeps_transition_time_while_status_holds() -> None:
    earlier = ready_condition(
        status=True, reason="Registered", message="v1", generation=1, now=NOW - timedelta(hours=1)
    )
    other = {"type": "Synced", "status": "True"}
    same = ready_condition(status=True, reason="Registered", message="v2", generation=2, now=NOW)
    merged = merge_conditions([other, earlier], same)
    assert merged[0] == other
    assert merged[1]["message"] == "v2"
    assert merged[1]["lastTransitionTime"] == "2026-11-27T11:00:00Z"

    flipped = ready_condition(
        status=False, reason="InvalidSpec", message="m", generation=3, now=NOW
    )
    assert merge_conditions([earlier], flipped)[0]["lastTransitionTime"] == "2026-11-27T12:00:00Z"
    assert merge_conditions(None, flipped) == [flipped]


def test_status_differs_ignores_timestamps_only() -> None:
    condition = ready_condition(
        status=True, reason="Registered", message="m", generation=1, now=NOW
    )
    res = resource({"steps": STEPS}, generation=1)
    desired = registration_status(res, condition, workflow_name="orders", version=1)
    assert status_differs(res, desired)
    res["status"] = desired
    later = ready_condition(
        status=True, reason="Registered", message="m", generation=1, now=NOW + timedelta(days=1)
    )
    assert not status_differs(
        res, registration_status(res, later, workflow_name="orders", version=1)
    )
    assert status_differs(res, registration_status(res, later, workflow_name="orders", version=2))


def test_run_to_status_normalises_a_run_record() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert run_to_status(
        {
            "id": 42,
            "status": "compensated",
            "started_at": datetime(2026, 11, 27, 13, 0, tzinfo=plus_two),
            "ended_at": "2026-11-27T11:30:00Z",
            "error": None,
        }
    ) == {
        "runId": "42",
        "status": "COMPENSATED",
        "startedAt": "2026-11-27T11:00:00Z",
        "finishedAt": "2026-11-27T11:30:00Z",
    }
    with pytest.raises(ValueError, match="unknown run status"):
        run_to_status({"run_id": "r", "status": "DONE"})
    with pytest.raises(ValueError, match="run_id"):
        run_to_status({"status": "RUNNING"})


def test_export_turns_spec_files_into_applicable_resources(tmp_path: Path) -> None:
    from services.orchestrator_controller.kubernetes.export import export

    spec = yaml.safe_load((EXAMPLES / "test.yaml").read_text())["spec"]["definition"]
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(spec))
    documents = list(yaml.safe_load_all(export([path, path], namespace="ingest")))
    assert len(documents) == 2
    assert documents[0]["kind"] == "Workflow"
    assert documents[0]["metadata"]["namespace"] == "ingest"
    assert resource_to_workflow_spec(documents[0]).name == "test"
