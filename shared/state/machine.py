"""Run and step states: the one vocabulary used by the API, the database and the events."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"
    COMPENSATED = "COMPENSATED"


TERMINAL_RUN = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.COMPENSATED,
        RunStatus.COMPENSATION_FAILED,
    }
)
TERMINAL_STEP = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.SKIPPED,
        StepStatus.CANCELLED,
        StepStatus.COMPENSATED,
    }
)
FAILED_STEP = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})
OPEN_STEP = frozenset(StepStatus) - TERMINAL_STEP

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPENSATING}
    ),
    RunStatus.COMPENSATING: frozenset({RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED}),
}

RUN_EVENT = {
    RunStatus.PENDING: "ingestion.workflow.pending",
    RunStatus.RUNNING: "ingestion.workflow.started",
    RunStatus.SUCCEEDED: "ingestion.workflow.completed",
    RunStatus.FAILED: "ingestion.workflow.failed",
    RunStatus.CANCELLED: "ingestion.workflow.cancelled",
    RunStatus.COMPENSATING: "ingestion.workflow.compensating",
    RunStatus.COMPENSATED: "ingestion.workflow.compensated",
    RunStatus.COMPENSATION_FAILED: "ingestion.workflow.compensation_failed",
}

STEP_EVENT = {
    StepStatus.RUNNING: "ingestion.step.started",
    StepStatus.SUCCEEDED: "ingestion.step.succeeded",
    StepStatus.RETRY_WAIT: "ingestion.step.retrying",
    StepStatus.FAILED: "ingestion.step.failed",
    StepStatus.TIMED_OUT: "ingestion.step.timed_out",
    StepStatus.SKIPPED: "ingestion.step.skipped",
    StepStatus.CANCELLED: "ingestion.step.cancelled",
    StepStatus.COMPENSATED: "ingestion.step.compensated",
    StepStatus.READY: "ingestion.step.ready",
}


def can_move(current: RunStatus, target: RunStatus) -> bool:
    """Whether a run may go from `current` to `target`."""
    return target in RUN_TRANSITIONS.get(current, frozenset())
