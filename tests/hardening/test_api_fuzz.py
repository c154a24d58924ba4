"""The controller's API contract under fuzzing: schemathesis sends generated requests, valid and
invalid, to every documented operation of the in-process app (a fresh migrated schema, the API
key sent) and checks that no answer is a 5xx, every status is documented, every body matches its
documented schema, and every 4xx body is the one `ErrorBody`; then again with the database
unreachable, where a route that reads it answers its declared 503 `database_unavailable`.

The two SSE feeds (/events, /workflows/{id}/events) stay open, so their requests are generated
by test_sse_fuzz.py, which reads each stream to a deadline; the engine and the agents are
fuzzed by test_api_fuzz_services.py. The UI, /docs, /health and /metrics are not in the OpenAPI
document (include_in_schema=False), so they are not fuzzed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.python import asgi

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from tests.hardening.fuzzing import CHECKS, fuzz_operations

KEY = "k-fuzz"
# per operation and mode (valid, invalid): the whole test stays well under 40 s
EXAMPLES = 40


@pytest.fixture(scope="module")
def api_schema(module_env: dict[str, Any]) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(
        ControllerSettings(
            **module_env,
            api_keys=[KEY],
            engine_url="http://127.0.0.1:9",  # nothing listens: runs stay PENDING
            start_loops=False,
        )
    )
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield loaded.exclude(path_regex=r"/events$")
    asgi.shutdown_lifespans()  # the app's lifespan ran in schemathesis's own event loop


def test_every_operation_keeps_its_contract(api_schema: schemathesis.BaseSchema) -> None:
    failures = fuzz_operations(
        api_schema, examples=EXAMPLES, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert not failures, "\n\n".join(failures)


OPEN = {"/agents/health", "/agents/health/history"}
# Routes that may answer without PostgreSQL: the health history is a Redis stream, and only
# its `agent` filter naming no built-in agent reads the registered agents (so it declares 503);
# the live settings are in memory (503 declared as every route's: the key check may need it).
NO_DATABASE = {"GET /agents/health/history", "GET /config"}
NEVER_DATABASE: set[str] = set()


def test_the_document_declares_auth_errors_and_examples() -> None:
    document = create_app(ControllerSettings(start_loops=False)).openapi()
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            for status, answer in responses.items():
                if status.startswith("4") or status == "503":
                    assert answer["content"]["application/json"]["schema"] == error_ref, (
                        where,
                        status,
                    )
            # A database outage answers 503 `database_unavailable` (shared/errors.py).
            assert ("503" in responses) == (where not in NEVER_DATABASE), where
            if path in OPEN:
                assert "security" not in operation, where
                continue
            (requirement,) = operation["security"]
            (scope,) = requirement["ApiKey"]
            assert f"`{scope}` scope" in operation["description"], where
            assert {"401", "403"} <= set(responses), where
    coordinate = document["components"]["schemas"]["CoordinateRequest"]
    assert coordinate["examples"], "POST /coordinate's body has examples"


@pytest.fixture(scope="module")
def unreachable_database_schema(common_env: dict[str, Any]) -> Iterator[schemathesis.BaseSchema]:
    env = {**common_env, "database_url": "postgresql+asyncpg://nobody@127.0.0.1:9/none"}
    app = create_app(
        ControllerSettings(
            **env,
            api_keys=[KEY],
            start_loops=False,
            register_builtin_workflows=False,
            seed_schedules=False,
        )
    )
    # The feeds stay open when they need no replay: test_sse_fuzz.py covers their outage.
    yield schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex=r"/events$")
    asgi.shutdown_lifespans()


def test_a_database_outage_answers_503_as_declared(
    unreachable_database_schema: schemathesis.BaseSchema,
) -> None:
    """With nothing listening on the database's port, every route answers a declared status:
    503 `database_unavailable` in ErrorBody where it touches the database, a 4xx where the
    request was refused before, and 2xx only from the routes that need no database."""
    statuses: dict[str, set[int]] = defaultdict(set)

    # not_a_server_error is left out: 503 is the answer wanted here.
    failures = fuzz_operations(
        unreachable_database_schema,
        examples=3,
        headers={"Authorization": f"Bearer {KEY}"},
        checks=[c for c in CHECKS if c.__name__ != "not_a_server_error"],
        modes=[GenerationMode.POSITIVE],
        seen=lambda label, status: statuses[label].add(status),
    )
    assert not failures, "\n\n".join(failures)
    answered = {label for label, seen in statuses.items() if 503 in seen}
    served = {label for label, seen in statuses.items() if any(s < 300 for s in seen)}
    assert served == NO_DATABASE
    # Routes whose every valid request reaches the database (no id to refuse first).
    assert {"GET /agents/health", "GET /orchestrators", "GET /workflows/status"} <= answered
