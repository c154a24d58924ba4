"""The launcher's supervisor: a service that exits is reported, restarted with back-off, and
the platform carries on (a run submitted while the engine is dead still finishes)."""

from __future__ import annotations

import uuid
from pathlib import Path

from launcher.processes import Service, free_port
from launcher.supervisor import RestartPolicy, Supervisor
from tests.e2e.conftest import Platform


def test_a_killed_engine_is_reported_restarted_and_the_run_finishes(platform: Platform) -> None:
    said: list[str] = []
    supervisor = Supervisor(
        list(platform.services.values()), say=said.append, policy=RestartPolicy(first_s=0.5)
    )
    with supervisor, platform.api() as api:
        platform.engine.kill()  # SIGKILL, as in the report: no chance to clean up
        accepted = api.post(
            "/coordinate",
            json={
                "workflow": "test",
                "inputs": {"remote_url": platform.samples_url("remote/orders_api.json")},
            },
            headers={"Idempotency-Key": f"supervised-{uuid.uuid4()}"},
        )
        assert accepted.status_code == 202, accepted.text
        exited = supervisor.wait_for("exited", "workflow-engine", timeout_s=10)
        assert exited.exit_code == -9 and "killed by SIGKILL" in exited.detail
        assert "restarting in 0.5 s" in exited.detail and "last lines of" in exited.detail
        supervisor.wait_for("restarted", "workflow-engine", timeout_s=10)
        supervisor.wait_for("healthy", "workflow-engine", timeout_s=60)
        run = platform.wait_for_run(accepted.json()["run_id"], timeout_s=60)
    assert run["status"] == "SUCCEEDED"
    assert any("workflow-engine exited: killed by SIGKILL" in line for line in said)
    assert any("workflow-engine restarted" in line for line in said)
    # Only the engine went down.
    assert {e.service for e in supervisor.events} == {"workflow-engine"}


def test_a_service_that_keeps_exiting_waits_longer_each_time(tmp_path: Path) -> None:
    # A service that cannot start (its module does not exist): uvicorn exits with code 3.
    broken = Service("broken", "launcher.no_such_module", free_port(), {}, tmp_path / "b.log")
    broken.start()
    policy = RestartPolicy(first_s=0.1, max_s=0.2, reset_after_s=60)
    with Supervisor([broken], say=lambda _: None, policy=policy, poll_s=0.05) as supervisor:
        delays, position = [], 0
        for _ in range(3):
            exited = supervisor.wait_for("exited", "broken", timeout_s=30, after=position)
            position = supervisor.events.index(exited, position) + 1
            assert exited.exit_code == 3 and "no_such_module" in exited.detail
            delays.append(exited.detail.split("restarting in ")[1].split(" s")[0])
        broken.stop()
    assert delays == ["0.1", "0.2", "0.2"]
