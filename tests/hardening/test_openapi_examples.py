"""Every request body the controller and the engine document comes with an example, and each
example is a body the route accepts: it matches the documented schema and the pydantic model
the route validates with (whose validators, such as a schedule's single trigger, the schema
cannot express). The agents' actions are checked in test_api_fuzz_services.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from services.orchestrator_controller.agents.schemas import AgentIn
from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.models.schemas import ModelBindingIn
from services.orchestrator_controller.runs.schemas import CoordinateRequest
from services.orchestrator_controller.schedules.schemas import ScheduleCreate, ScheduleUpdate
from services.orchestrator_controller.settings import ControllerSettings
from services.workflow_engine.app import create_app as create_engine_app
from services.workflow_engine.runs.schemas import ExecuteRequest
from services.workflow_engine.settings import EngineSettings
from shared.spec.models import WorkflowSpec
from tests.hardening.request_examples import (
    documented_bodies,
    resolve,
    schema_errors,
    without_examples,
)

# The model each route validates its body with; a new route with a body fails the test until
# it is listed here.
CONTROLLER_BODIES: dict[str, type[BaseModel]] = {
    "POST /workflows/definitions": WorkflowSpec,
    "POST /coordinate": CoordinateRequest,
    "POST /schedules": ScheduleCreate,
    "PATCH /schedules/{ref}": ScheduleUpdate,
    "PUT /models/{model}": ModelBindingIn,
    "POST /agents": AgentIn,
}
ENGINE_BODIES: dict[str, type[BaseModel]] = {"POST /execute": ExecuteRequest}


def controller_document() -> dict[str, Any]:
    document: dict[str, Any] = create_app(ControllerSettings(start_loops=False)).openapi()
    return document


def engine_document() -> dict[str, Any]:
    document: dict[str, Any] = create_engine_app(EngineSettings(start_loops=False)).openapi()
    return document


@pytest.mark.parametrize(
    ("load", "models"),
    [(controller_document, CONTROLLER_BODIES), (engine_document, ENGINE_BODIES)],
    ids=["orchestrator-controller", "workflow-engine"],
)
def test_every_request_body_has_a_valid_example(
    load: Callable[[], dict[str, Any]], models: dict[str, type[BaseModel]]
) -> None:
    document = load()
    bodies = documented_bodies(document)
    assert {body.label for body in bodies} == set(models)
    missing = without_examples(bodies)
    assert not missing, f"request bodies without an example: {missing}"
    for body in bodies:
        model = models[body.label]
        where = f"{body.label} ({body.media_type})"
        assert resolve(document, body.schema)["title"] == model.__name__, where
        for example in body.examples:
            assert not schema_errors(document, body.schema, example), (where, example)
            model.model_validate(example)
