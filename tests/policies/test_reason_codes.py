"""Every wait reason the gates write maps to its gate (the `reason` of admission_waiting_runs)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.gates import (
    Candidate,
    Load,
    Pause,
    reason_code,
    wait_reason,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = OrchestratorsConfig()
HOST = "api.example.com"
# A workflow named like a manager: its reason must still read as the workflow's cap.
LOOKALIKE = "orders-api-manager"
MANY = 10**6


def _run(kind: str, workflow: str = "orders") -> Candidate:
    return Candidate(
        run_id=None,
        workflow=workflow,
        kind=kind,
        inputs={"base_url": f"https://{HOST}/v1"},
        priority=0,
        created_at=NOW,
    )


def _load(**changes: object) -> Load:
    load = Load()
    for name, value in changes.items():
        setattr(load, name, value)
    return load


@pytest.mark.parametrize(
    ("load", "run", "code"),
    [
        (_load(total=MANY), _run("standard"), "overall_cap"),
        (_load(by_workflow=Counter({LOOKALIKE: MANY})), _run("x", LOOKALIKE), "workflow_cap"),
        (_load(by_manager=Counter(api_manager=MANY)), _run("secure_api"), "manager_cap"),
        (
            _load(paused={HOST: Pause(until=NOW + timedelta(minutes=1), why="HTTP 429")}),
            _run("secure_api"),
            "host_paused",
        ),
        (_load(by_host=Counter({HOST: MANY})), _run("secure_api"), "host_cap"),
        (_load(recent_by_host=Counter({HOST: MANY})), _run("secure_api"), "host_rate_limit"),
        (_load(backlog=MANY), _run("realtime_stream"), "backpressure"),
    ],
)  # fmt: skip
def test_each_gate_has_its_code(load: Load, run: Candidate, code: str) -> None:
    reason = wait_reason(CONFIG, load, run, NOW)
    assert reason is not None
    assert reason_code(reason) == code, reason


@pytest.mark.parametrize(
    ("manager", "kind", "other"),
    [
        ("batch_manager", "secure_api", None),
        ("api_manager", "secure_api", "standard"),
        ("file_manager", "bulk_file", "secure_api"),
        ("ingestion_manager", "unclaimed", "bulk_file"),
        ("stream_manager", "realtime_stream", "test"),
    ],
)
def test_a_paused_manager_holds_its_runs_back(manager: str, kind: str, other: str | None) -> None:
    paused = CONFIG.model_copy(
        update={manager: getattr(CONFIG, manager).model_copy(update={"paused": True})}
    )
    reason = wait_reason(paused, _load(), _run(kind), NOW)
    assert reason == f"waiting: {manager.replace('_', '-')} paused"
    assert reason_code(reason) == "manager_paused"
    if other is not None:  # the other managers' runs go on (a paused batch manager stops all)
        assert wait_reason(paused, _load(), _run(other), NOW) is None


def test_anything_else_is_other() -> None:
    assert reason_code(None) == "other"
    assert reason_code("waiting: no engine has claimed this run for 30 s") == "other"
