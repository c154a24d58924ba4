"""A run's log lines from every service, after real runs on the running platform."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from launcher.processes import free_port
from tests.e2e.conftest import Platform
from tests.e2e.test_cli import ingestctl


def submit(platform: Platform, body: dict[str, Any]) -> str:
    with platform.api() as api:
        accepted = api.post(
            "/coordinate", json=body, headers={"Idempotency-Key": f"logs-{uuid.uuid4()}"}
        )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["run_id"])


def unreachable() -> dict[str, Any]:
    """A spec that fails fast: one call per attempt to a port nobody listens on (a port of
    its own: the agent's circuit breaker is per host and port), retried once by the engine."""
    url = f"http://127.0.0.1:{free_port()}/nothing.json"
    return {
        "name": "logs-unreachable",
        "steps": [
            {
                "id": "fetch",
                "agent": "data-fetch-retry",
                "action": "fetch",
                "params": {"url": url, "max_attempts": 1},
                "retry": {"max_attempts": 2, "initial_interval_s": 0.1},
            }
        ],
    }


def logs_until_finished(platform: Platform, run_id: str) -> list[dict[str, Any]]:
    """The run's lines once the engine's `run finished` line is written (after its commit)."""
    deadline = time.monotonic() + 30
    with platform.api() as api:
        while True:
            found = api.get(f"/workflows/{run_id}/logs").json()
            lines: list[dict[str, Any]] = found["lines"]
            if any(line["message"].startswith("run finished") for line in lines):
                return lines
            assert time.monotonic() < deadline, f"no 'run finished' line: {found}"
            time.sleep(0.2)


def test_a_runs_lines_come_from_the_controller_the_engine_and_the_agents(
    platform: Platform,
) -> None:
    remote = platform.samples_url("remote/orders_api.json")
    run_id = submit(platform, {"workflow": "test", "inputs": {"remote_url": remote}})
    assert platform.wait_for_run(run_id)["status"] == "SUCCEEDED"
    lines = logs_until_finished(platform, run_id)
    assert all(line["run_id"] == run_id for line in lines)
    assert [line["ts"] for line in lines] == sorted(line["ts"] for line in lines)
    services = {line["service"] for line in lines}
    assert {"orchestrator-controller", "workflow-engine", "data-merger", "data-collector"} <= (
        services
    )
    accepted = next(line for line in lines if line["message"].startswith("run accepted"))
    assert accepted["service"] == "orchestrator-controller" and accepted["workflow"] == "test"
    merge = [line for line in lines if line.get("step_id") == "merge"]
    engine = [
        line["message"].split(":")[0] for line in merge if line["service"] == "workflow-engine"
    ]
    assert engine[:1] == ["step claimed"] and any(m.startswith("step succeeded") for m in engine)
    call = next(line for line in merge if line["service"] == "data-merger")
    assert call["attempt"] == 1 and call["status"] == 200 and call["path"] == "/api/v1/merge"
    finished = next(line for line in lines if line["message"].startswith("run finished"))
    assert finished["status"] == "SUCCEEDED" and "step_id" not in finished

    # The CLI shows the same lines, and one step's alone.
    shown = ingestctl(platform, "logs", run_id, "--step", "merge")
    assert shown.returncode == 0, shown.stderr
    assert "step claimed" in shown.stdout and "POST /api/v1/merge 200" in shown.stdout
    assert "check_source" not in shown.stdout
    as_json = json.loads(ingestctl(platform, "logs", run_id, "-o", "json").stdout)
    assert as_json["total"] >= len(lines) and as_json["lines"][0]["run_id"] == run_id


def test_a_failed_runs_lines_say_what_failed_and_what_was_retried(platform: Platform) -> None:
    run_id = submit(platform, {"spec": unreachable(), "inputs": {}})
    assert platform.wait_for_run(run_id)["status"] == "FAILED"
    lines = logs_until_finished(platform, run_id)
    engine = [line for line in lines if line["service"] == "workflow-engine"]
    failed = [line for line in engine if line["message"].startswith("step failed")]
    assert [line["attempt"] for line in failed] == [1, 2]
    assert all(line["level"] == "WARNING" and line["error_code"] for line in failed)
    [retry] = [line for line in engine if line["message"].startswith("retry scheduled")]
    assert retry["attempt"] == 1 and retry["next_attempt"] == 2 and retry["step_id"] == "fetch"
    agent = [line for line in lines if line["service"] == "data-fetch-retry"]
    assert {line["attempt"] for line in agent} == {1, 2}
    finished = next(line for line in lines if line["message"].startswith("run finished"))
    assert finished["status"] == "FAILED" and finished["level"] == "WARNING"
    unknown = ingestctl(platform, "logs", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr
