"""Turning one claimed step into one agent call and its AttemptResult."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.workflow_engine.retry_model import RetryAdvisor
from shared.agent_client import AgentCallError, AgentClient
from shared.spec.models import RetryPolicy, StepSpec, parse_spec
from shared.spec.templates import TemplateContext, TemplateError, render
from shared.state.runs import RunContext
from shared.state.steps import AttemptResult, ClaimedStep
from shared.tracing import traceparent


class RunCache:
    """Parsed specs of recent runs, so a step does not re-read and re-validate its run."""

    def __init__(self, sessionmaker: async_sessionmaker, size: int = 2048) -> None:
        self.sessionmaker = sessionmaker
        self.size = size
        self._runs: OrderedDict[uuid.UUID, RunContext] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Future[RunContext]] = {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def put(self, run_id: uuid.UUID, context: RunContext) -> None:
        """Remember a run's context (the engine that starts a run has it in hand)."""
        self._runs[run_id] = context
        self._runs.move_to_end(run_id)
        if len(self._runs) > self.size:
            self._runs.popitem(last=False)

    async def get(self, run_id: uuid.UUID) -> RunContext:
        """The run's context, loaded once (steps of one run claimed together share the load)."""
        found = self._runs.get(run_id)
        if found is not None:
            self._runs.move_to_end(run_id)
            return found
        loading = self._loading.get(run_id)
        if loading is None:
            loading = self._loading[run_id] = asyncio.ensure_future(self._load(run_id))
            loading.add_done_callback(lambda _: self._loading.pop(run_id, None))
        # shield: one step's task being cancelled must not cancel the others' shared load
        return await asyncio.shield(loading)

    async def _load(self, run_id: uuid.UUID) -> RunContext:
        async with self.sessionmaker() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT spec::text AS spec, inputs, trace_id, deadline_at "
                        "FROM workflow_runs WHERE id = :id"
                    ),
                    {"id": run_id},
                )
            ).one()
        context = RunContext(
            spec=parse_spec(row.spec),
            inputs=row.inputs,
            trace_id=row.trace_id,
            deadline_at=row.deadline_at,
            map_items={},
        )
        self.put(run_id, context)
        return context


def idempotency_key(step: ClaimedStep) -> str:
    """The same for every attempt of one step (so agents can recognise a repeat)."""
    key = f"{step.run_id}:{step.step_id}"
    if step.map_index >= 0:
        key += f":{step.map_index}"
    if step.role != "action":
        key += f":{step.role}"
    return key


def retry_delay(policy: RetryPolicy, step: ClaimedStep, error: AgentCallError) -> float | None:
    """Seconds until the next attempt, or None when the step must fail now."""
    if not error.retryable or error.code in policy.non_retryable_error_codes:
        return None
    if step.attempts >= policy.max_attempts:
        return None
    delay = policy.delay_before(step.attempts + 1)
    if error.retry_after_s is not None:
        delay = max(delay, min(error.retry_after_s, policy.max_interval_s or delay))
    return delay


@dataclass(frozen=True)
class StepLimits:
    """Caps applied before a call is made (ENGINE_MAX_MAP_ITEMS, ENGINE_MAX_RENDERED_CHARS)."""

    max_map_items: int = 100_000
    max_rendered_chars: int = 1024 * 1024


def _template_context(
    run: RunContext, step: ClaimedStep, limits: StepLimits = StepLimits()
) -> TemplateContext:
    return TemplateContext(
        inputs=run.inputs,
        step_outputs=step.outputs,
        run_id=str(step.run_id),
        max_text_chars=limits.max_rendered_chars,
    )


def _map_items(
    run: RunContext, spec: StepSpec, step: ClaimedStep, limits: StepLimits = StepLimits()
) -> list[Any]:
    cached = run.map_items.get(spec.id)
    if cached is None:
        assert spec.map_over is not None
        value = render(spec.map_over, _template_context(run, step, limits))
        if not isinstance(value, list):
            raise TemplateError(
                f"map_over of {spec.id!r} resolved to {type(value).__name__}, not a list"
            )
        if len(value) > limits.max_map_items:
            raise TemplateError(
                f"map_over of {spec.id!r} has {len(value)} items, over the limit of "
                f"{limits.max_map_items} (ENGINE_MAX_MAP_ITEMS)"
            )
        cached = run.map_items[spec.id] = value
    return cached


async def run_step(
    step: ClaimedStep,
    run: RunContext,
    client: AgentClient,
    *,
    worker: str,
    limits: StepLimits = StepLimits(),
    advisor: RetryAdvisor | None = None,
) -> tuple[AttemptResult, float | None]:
    """Execute one claimed attempt; return its result and the agent call latency."""
    spec = run.spec.step(step.step_id)
    # Only adaptive steps meet the retry model; a static step's path is unchanged.
    if spec.retry.strategy != "adaptive":
        advisor = None
    started = time.perf_counter()

    def result(**kwargs: Any) -> AttemptResult:
        return AttemptResult(
            step=step,
            worker=worker,
            duration_ms=(time.perf_counter() - started) * 1000,
            **kwargs,
        )

    try:
        context = _template_context(run, step, limits)
        if step.role == "compensation":
            assert spec.compensate is not None
            # A compensation also sees the output of the step it undoes.
            params = render(spec.compensate.params, context)
        elif spec.map_over is not None and step.map_index < 0:
            items = _map_items(run, spec, step, limits)
            return result(
                outcome="succeeded", map_items=items, fanout_limit=spec.map_concurrency
            ), None
        elif spec.map_over is not None:
            items = _map_items(run, spec, step, limits)
            context.item, context.has_item = items[step.map_index], True
            params = render(spec.params, context)
        else:
            params = render(spec.params, context)
    except (TemplateError, IndexError) as exc:
        error = {"code": "template_error", "message": str(exc), "retryable": False}
        return result(outcome="failed", error=error), None

    timeout = spec.time_limit(run.inputs)
    bounded_by_run = False
    if run.deadline_at is not None:
        remaining = (run.deadline_at - datetime.now(UTC)).total_seconds()
        if remaining <= 0:  # no call: the run has no time left for it
            late = AgentCallError("run has no time left", code="timeout", retryable=False)
            return _failure(result, spec.retry, step, late, bounded_by_run=True), None
        bounded_by_run = remaining < timeout
        timeout = min(timeout, remaining)
    headers = {
        "X-Run-Id": str(step.run_id),
        "X-Step-Id": step.step_id,
        "X-Attempt": str(step.attempts),  # for the agent's log lines
        "X-Trace-Id": run.trace_id,
    }
    # W3C: the agent's span is a child of this attempt's span (the run's root when off).
    if (parent := traceparent(run.trace_id)) is not None:
        headers["traceparent"] = parent
    try:
        reply = await asyncio.wait_for(
            client.call(
                step.agent,
                step.action,
                params,
                idempotency_key=idempotency_key(step),
                timeout_s=timeout,
                context=headers,
            ),
            # The whole step, connection set-up and body included, is bounded too.
            timeout=timeout + 1.0,
        )
    except TimeoutError:
        error_obj = AgentCallError(
            f"step exceeded timeout_s={timeout:g}", code="timeout", retryable=True
        )
        failed = _failure(result, spec.retry, step, error_obj, bounded_by_run)
        return _adapt(failed, advisor, spec.retry, run, time.perf_counter() - started), None
    except AgentCallError as exc:
        failed = _failure(result, spec.retry, step, exc, bounded_by_run)
        failed = _adapt(failed, advisor, spec.retry, run, time.perf_counter() - started, exc)
        return failed, None
    if advisor is not None:
        advisor.observe(step.agent, ok=True, latency_s=reply.latency_s)
        advisor.forget(step.id)
    return result(outcome="succeeded", output=reply.output), reply.latency_s


def _adapt(
    failed: AttemptResult,
    advisor: RetryAdvisor | None,
    policy: RetryPolicy,
    run: RunContext,
    latency_s: float,
    error: AgentCallError | None = None,
) -> AttemptResult:
    """An adaptive step's failure: the model chooses the delay or gives up (limits clamped).

    Only a retry the static policy allows (retryable, attempts left) is put to the model, so
    it can wait differently or give up earlier, never retry more than the spec says.
    """
    if advisor is None:
        return failed
    step = failed.step
    advisor.observe(step.agent, ok=False, latency_s=latency_s)
    if failed.retry_in_s is None:
        advisor.forget(step.id)
        return failed
    remaining = None
    if run.deadline_at is not None:
        remaining = (run.deadline_at - datetime.now(UTC)).total_seconds()
    decision, record = advisor.decide(
        step_row=step.id,
        agent=step.agent,
        attempt=step.attempts,
        attempts_left=policy.max_attempts - step.attempts,
        max_interval_s=policy.max_interval_s,
        remaining_s=remaining,
        error=failed.error or {},
        retry_after_s=error.retry_after_s if error is not None else None,
    )
    failed.retry_in_s = decision.delay_s if decision.retry else None
    failed.decision = record
    if not decision.retry:
        advisor.forget(step.id)
    return failed


def _failure(
    result: Any,
    policy: RetryPolicy,
    step: ClaimedStep,
    error: AgentCallError,
    bounded_by_run: bool = False,
) -> AttemptResult:
    if bounded_by_run and error.code == "timeout":
        # The call had only what was left of the run's time: the run's timeout, not the step's.
        error = AgentCallError("run exceeded its timeout_s", code="run_timeout", retryable=False)
    outcome = "timed_out" if error.code in ("timeout", "run_timeout") else "failed"
    return result(
        outcome=outcome,
        error=error.as_dict(),
        retry_in_s=retry_delay(policy, step, error),
    )
