"""Pydantic models of a workflow specification (what a user declares)."""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

# The validation context key of the agent catalog (name -> actions) a spec is checked against.
AGENTS_CONTEXT = "agents"

WorkflowKind = Literal[
    "standard",
    "secure_api",
    "bulk_file",
    "realtime_stream",
    "resilient_fetch",
    "test",
    "training",
    "maintenance",
]
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_INT32 = 2**31 - 1  # the platform's integer columns (versions) are PostgreSQL integers
MAX_STEP_TIMEOUT_S = 86400.0


def time_limit_refusal(value: Any) -> str | None:
    """Why `value` is no step time limit (a number of seconds, 0 < s <= a day), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number of seconds, got {type(value).__name__}"
    if not 0 < value <= MAX_STEP_TIMEOUT_S:
        return f"{value!r} is not in (0, {MAX_STEP_TIMEOUT_S:g}] seconds"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """How a failed step attempt is retried (after Temporal's RetryPolicy).

    The n-th retry waits `initial_interval_s * backoff_coefficient**(n-1)`, capped at
    `max_interval_s`, then spread by +/- `jitter` (a fraction) so that many failing steps do not
    retry in lock-step. Errors whose code is in `non_retryable_error_codes` fail at once.
    """

    max_attempts: int = Field(3, ge=1, le=100, description="attempts in all, the first included")
    initial_interval_s: float = Field(1.0, ge=0, le=3600)
    backoff_coefficient: float = Field(2.0, ge=1, le=10)
    max_interval_s: float = Field(60.0, ge=0, le=86400)
    jitter: float = Field(0.2, ge=0, le=1)
    non_retryable_error_codes: list[str] = Field(default_factory=list)
    strategy: Literal["static", "adaptive"] = Field(
        "static",
        description="static: the backoff above; adaptive: the retry_strategy model chooses the "
        "delay or gives up early, always within max_attempts, max_interval_s and the deadline",
    )

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number `attempt` (2 for the first retry)."""
        base = self.initial_interval_s * self.backoff_coefficient ** max(attempt - 2, 0)
        base = min(base, self.max_interval_s)
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


class CompensateSpec(_Strict):
    """The action that undoes a succeeded step when the run fails (saga)."""

    action: str
    params: dict[str, Any] = Field(default_factory=dict)


class InputSpec(_Strict):
    type: Literal["string", "integer", "number", "boolean", "object", "array", "any"] = "any"
    required: bool = False
    default: Any = None
    description: str = ""
    enum: list[Any] | None = Field(None, description="the only values the input may take")
    required_if: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="{other_input: [values]}: this input must be non-empty when another input "
        "has one of these values (e.g. a primary_key when write_disposition is merge)",
    )


class StepSpec(_Strict):
    id: str = Field(pattern=STEP_ID_PATTERN)
    agent: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float = Field(
        60.0, gt=0, le=MAX_STEP_TIMEOUT_S, description="limit for one agent call, seconds"
    )
    # A user's per-run limit without a copy of the workflow: the input is bound and checked at
    # submission (runs/inputs.py) like any other, so a bad one is a 422 naming it.
    timeout_from: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="a number input whose value, when the run gives one, replaces timeout_s",
    )
    map_over: str | None = Field(
        None, description="template resolving to a list; one child step per element (${item})"
    )
    map_concurrency: int = Field(8, ge=1, le=1000)
    compensate: CompensateSpec | None = None

    def time_limit(self, inputs: Mapping[str, Any]) -> float:
        """Seconds one agent call may take, for a run with these (bound, checked) inputs."""
        given = inputs.get(self.timeout_from) if self.timeout_from is not None else None
        return self.timeout_s if given is None else float(given)


class WorkflowSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,99}$")
    version: int = Field(1, ge=1, le=MAX_INT32)
    kind: WorkflowKind = "standard"
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1, max_length=500)
    timeout_s: float | None = Field(None, gt=0, description="limit for the whole run")

    @model_validator(mode="after")
    def _check_graph(self, info: ValidationInfo) -> WorkflowSpec:
        # Imported here: validation needs the model and the model needs validation.
        from shared.spec.validation import validate_workflow

        # `model_validate(..., context={AGENTS_CONTEXT: catalog})` checks agents and actions
        # too; a stored spec is parsed without, whatever is registered now.
        context = info.context if isinstance(info.context, dict) else {}
        validate_workflow(self, context.get(AGENTS_CONTEXT))
        return self

    def step(self, step_id: str) -> StepSpec:
        """The step with this id."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


@functools.lru_cache(maxsize=256)
def parse_spec(spec_json: str) -> WorkflowSpec:
    """A stored spec, parsed and validated once per distinct text: runs of one workflow share
    it, so starting a batch of them validates the spec once. Treat the result as read-only."""
    return WorkflowSpec.model_validate_json(spec_json)
