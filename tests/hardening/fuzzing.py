"""What the API fuzz tests share: the checks every answer must pass and the loop that runs
schemathesis over each documented operation of an in-process app."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.errors import ErrorBody

Check = Callable[[Any, Any, Any], bool | None]


def error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx or a 503 answers with the one error body, whatever the route."""
    if 400 <= response.status_code < 500 or response.status_code == 503:
        ErrorBody.model_validate(response.json())
    return None


CHECKS: list[Check] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_body,
]


def fuzz_operations(
    schema: schemathesis.BaseSchema,
    *,
    examples: int,
    headers: dict[str, str] | None = None,
    checks: Iterable[Check] = CHECKS,
    modes: Iterable[GenerationMode] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    seen: Callable[[str, int], None] | None = None,
) -> list[str]:
    """Every failure of every operation of `schema`, `examples` requests per operation and mode;
    `seen(operation label, status)` hears each answer."""
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    # A templated path filled with another route's literal segment (`/workflows/{run_id}` as
    # `/workflows/status`) is a request to that other operation, answered by its contract.
    static_paths = {op.path for op in operations if "{" not in op.path}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operation = result.ok()
        for mode in modes:
            fuzz = _fuzzer(operation, mode, examples, headers, list(checks), seen, static_paths)
            try:
                fuzz()
            except Unsatisfiable:
                continue  # an operation without parameters has no invalid request to make
            except BaseException as exc:  # schemathesis raises an exception group; keep going
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def _fuzzer(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    headers: dict[str, str] | None,
    checks: list[Check],
    seen: Callable[[str, int], None] | None,
    static_paths: set[str],
) -> Callable[[], None]:
    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        if "{" in operation.path and case.formatted_path in static_paths:
            reject()
        response = case.call(headers=headers)
        if seen is not None:
            seen(operation.label, response.status_code)
        case.validate_response(response, checks=checks, headers=headers)

    return fuzz
