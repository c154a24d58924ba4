"""Run and step states and the names of their events: the one vocabulary used by the API, the
database and the event streams (which change leads where: transitions.py)."""

from __future__ import annotations

from collections.abc import Iterable
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

# Changes that leave the status as it was but say why a row waits (the status_reason) or what
# it waits on: declared in transitions.py beside the status changes.
RUN_WAITING = "ingestion.workflow.waiting"  # held by a policy, or not started by any engine
RUN_ADMITTED = "ingestion.workflow.admitted"  # a policy let a held run start
RUN_CANCELLING = "ingestion.workflow.cancelling"  # a started run was asked to stop
STEP_FANNED_OUT = "ingestion.step.fanned_out"  # a map_over step handed its items to children

# Every event type a run's history may hold (one Redis stream each).
EVENT_TYPES = frozenset(
    {
        *RUN_EVENT.values(),
        *STEP_EVENT.values(),
        RUN_WAITING,
        RUN_ADMITTED,
        RUN_CANCELLING,
        STEP_FANNED_OUT,
    }
)

BROKEN_STEP = FAILED_STEP | {StepStatus.SKIPPED, StepStatus.CANCELLED}  # an upstream that failed


def sql_list(statuses: Iterable[StrEnum]) -> str:
    """Statuses as an SQL list literal, `('A', 'B')`, for the reads that test a status."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")"
