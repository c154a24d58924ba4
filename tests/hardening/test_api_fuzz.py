"""The controller's API contract under fuzzing: schemathesis sends generated requests, valid and
invalid, to every documented operation of the in-process app (a fresh migrated schema, the API
key sent) and checks that no answer is a 5xx, every status is documented, every body matches its
documented schema, and every 4xx body is the one `ErrorBody`.

Left out: the two SSE feeds (/events, /workflows/{id}/events), whose bodies are streams a
schema cannot describe and which stay open; the UI, /docs, /health and /metrics are not in the
OpenAPI document (include_in_schema=False), so they are not fuzzed either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.errors import ErrorBody
from tests.conftest import fresh_schema, target_schema

KEY = "k-fuzz"
# per operation and mode (valid, invalid): the whole test stays well under 40 s
EXAMPLES = 40


@pytest.fixture(scope="module")
def api_schema(common_env: dict[str, Any]) -> Iterator[schemathesis.BaseSchema]:
    for schema in fresh_schema():
        env = {**common_env, "db_schema": schema, "target_schemas": [target_schema(schema)]}
        app = create_app(
            ControllerSettings(
                **env,
                api_keys=[KEY],
                engine_url="http://127.0.0.1:9",  # nothing listens: runs stay PENDING
                start_loops=False,
            )
        )
        loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield loaded.exclude(path_regex=r"/events$")
        asgi.shutdown_lifespans()  # the app's lifespan ran in schemathesis's own event loop


def error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answers with the one error body, whatever the route."""
    if 400 <= response.status_code < 500:
        ErrorBody.model_validate(response.json())
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_body,
]


def test_every_operation_keeps_its_contract(api_schema: schemathesis.BaseSchema) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)

            try:
                fuzz()
            except Unsatisfiable:
                continue  # an operation without parameters has no invalid request to make
            except BaseException as exc:  # schemathesis raises an exception group; keep going
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


OPEN = {"/agents/health", "/agents/health/history"}


def test_the_document_declares_auth_errors_and_examples() -> None:
    document = create_app(ControllerSettings(start_loops=False)).openapi()
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            if path in OPEN:
                assert "security" not in operation, where
                continue
            (requirement,) = operation["security"]
            (scope,) = requirement["ApiKey"]
            assert f"`{scope}` scope" in operation["description"], where
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    assert answer["content"]["application/json"]["schema"] == error_ref, (
                        where,
                        status,
                    )
            assert {"401", "403"} <= set(operation["responses"]), where
    coordinate = document["components"]["schemas"]["CoordinateRequest"]
    assert coordinate["examples"], "POST /coordinate's body has examples"
