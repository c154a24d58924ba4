"""The engine's log lines about steps and runs: claimed, finished, retry scheduled, run ended;
and what an attempt's trace span says about it.

A step's task binds its run, step and attempt (shared/logs.py), so these lines and any other
the attempt causes (the agent client's, a crash's traceback) name the step they are about.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from shared.logs import bind
from shared.state.progress import RunChange
from shared.state.steps import AttemptResult, ClaimedStep

log = logging.getLogger("services.workflow_engine.steps")


def step_claimed(step: ClaimedStep) -> None:
    """Bind the step's context for its task and say it was claimed."""
    bind(run_id=step.run_id, step_id=step.step_id, attempt=step.attempts)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "step claimed: %s.%s (attempt %d of %d)",
            step.agent,
            step.action,
            step.attempts,
            step.max_attempts,
            extra={"agent": step.agent, "action": step.action, **_item(step)},
        )


def step_finished(result: AttemptResult) -> None:
    """One line for the attempt's outcome; a second when a retry is scheduled."""
    step, error = result.step, result.error or {}
    level = logging.INFO if result.outcome == "succeeded" else logging.WARNING
    if not log.isEnabledFor(level):
        return
    duration_ms = round(result.duration_ms, 2)
    fields = {"status": result.outcome, "duration_ms": duration_ms, **_item(step)}
    if error:
        fields["error_code"] = error.get("code")
        log.log(
            level,
            "step %s in %.0f ms: %s (%s)",
            result.outcome,
            duration_ms,
            error.get("message", ""),
            error.get("code"),
            extra=fields,
        )
    else:
        log.log(level, "step %s in %.0f ms", result.outcome, duration_ms, extra=fields)
    if result.retry_in_s is not None:
        log.warning(
            "retry scheduled: attempt %d of %d in %.1f s",
            step.attempts + 1,
            step.max_attempts,
            result.retry_in_s,
            extra={"retry_in_s": result.retry_in_s, "next_attempt": step.attempts + 1},
        )


def runs_changed(changes: list[RunChange]) -> None:
    """A line for each run that reached a final status."""
    for change in changes:
        if change.status in ("RUNNING", "COMPENSATING"):
            continue
        duration_ms = None if change.duration_s is None else round(change.duration_s * 1000, 2)
        level = logging.INFO if change.status == "SUCCEEDED" else logging.WARNING
        log.log(
            level,
            "run finished: %s",
            change.status.value,
            extra={
                "run_id": str(change.run_id),
                "status": change.status.value,
                "duration_ms": duration_ms,
                "kind": change.kind,
            },
        )


def _item(step: ClaimedStep) -> dict[str, object]:
    # Fan-out children share their step id; the index tells them apart.
    fields: dict[str, object] = {}
    if step.map_index >= 0:
        fields["map_index"] = step.map_index
    if step.role != "action":
        fields["role"] = step.role
    return fields


def span_attributes(step: ClaimedStep) -> dict[str, str | int]:
    """The attributes of an attempt's trace span."""
    attributes: dict[str, str | int] = {
        "run_id": str(step.run_id),
        "step_id": step.step_id,
        "attempt": step.attempts,
        "agent": step.agent,
        "action": step.action,
        "role": step.role,
    }
    if step.map_index >= 0:
        attributes["map_index"] = step.map_index
    return attributes


def record_outcome(span: trace.Span, result: AttemptResult) -> None:
    """Record an attempt's outcome on its span (nothing when tracing is off)."""
    if not span.is_recording():
        return
    span.set_attribute("outcome", result.outcome)
    if result.outcome != "succeeded":
        code = (result.error or {}).get("code", result.outcome)
        span.set_attribute("error_code", str(code))
        span.set_status(trace.StatusCode.ERROR, str(code))
