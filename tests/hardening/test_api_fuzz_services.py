"""The workflow engine's and every agent's API contract under fuzzing, like the controller's in
test_api_fuzz.py: schemathesis sends generated requests, valid and invalid, to every operation
each app's own OpenAPI document describes (in-process, a fresh migrated schema, the service token
sent), and checks that no answer is a 5xx, every status is documented, every body matches its
documented schema, and every 4xx body is the one `ErrorBody`.

Each agent documents one operation per action, `POST /api/v1/<action>`, with the action's own
body model, so the fuzzer sends valid bodies into the actions themselves as well as invalid ones
to their validation.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.python import asgi

from agents.base.settings import AgentSettings
from services.workflow_engine.app import create_app as create_engine_app
from services.workflow_engine.settings import EngineSettings
from shared.spec.catalog import AGENT_ACTIONS
from tests.conftest import service_auth
from tests.hardening.fuzzing import fuzz_operations
from tests.hardening.request_examples import documented_bodies, schema_errors, without_examples

# per operation and mode: the engine and the seven agents together stay well under 60 s
EXAMPLES = 25


@pytest.fixture(scope="module")
def env(module_env: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield module_env
    asgi.shutdown_lifespans()  # each app's lifespan ran in schemathesis's own event loop


def agent_app(agent: str, env: dict[str, Any]) -> FastAPI:
    module = importlib.import_module(f"agents.{agent.replace('-', '_')}.app")
    app: FastAPI = module.create_app(AgentSettings(**env, mlflow_tracking_uri=None))
    return app


def engine_app(env: dict[str, Any]) -> FastAPI:
    return create_engine_app(EngineSettings(**env, start_loops=False))


@pytest.mark.parametrize("agent", sorted(AGENT_ACTIONS))
def test_every_action_documents_its_body(env: dict[str, Any], agent: str) -> None:
    app = agent_app(agent, env)
    document = app.openapi()
    registry = app.state.registry
    for name in AGENT_ACTIONS[agent]:
        operation = document["paths"][f"/api/v1/{name}"]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
        model = registry.actions[name].body
        assert set(schema.get("required", [])) == {
            f for f, info in model.model_fields.items() if info.is_required()
        }, name
        assert set(schema.get("properties", {})) == set(model.model_fields), name
        assert {"401", "409", "413", "422", "503"} <= set(operation["responses"]), name


@pytest.mark.parametrize("agent", sorted(AGENT_ACTIONS))
def test_every_action_documents_a_valid_example(env: dict[str, Any], agent: str) -> None:
    """Each action's example is a body the action accepts: its schema's and its model's."""
    app = agent_app(agent, env)
    document = app.openapi()
    registry = app.state.registry
    bodies = documented_bodies(document)
    missing = without_examples(bodies)
    assert not missing, f"request bodies without an example: {missing}"
    actions = {f"POST /api/v1/{name}": action for name, action in registry.actions.items()}
    assert {body.label for body in bodies} == set(actions)
    for body in bodies:
        for example in body.examples:
            assert not schema_errors(document, body.schema, example), (body.label, example)
            actions[body.label].body.model_validate(example)


@pytest.mark.parametrize("service", ["workflow-engine", *sorted(AGENT_ACTIONS)])
def test_every_operation_keeps_its_contract(env: dict[str, Any], service: str) -> None:
    app = engine_app(env) if service == "workflow-engine" else agent_app(service, env)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = fuzz_operations(schema, examples=EXAMPLES, headers=service_auth())
    assert not failures, "\n\n".join(failures)
