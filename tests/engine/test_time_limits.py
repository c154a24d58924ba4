"""A step's time limit given by the run's input (`timeout_from`), enforced by the engine."""

from __future__ import annotations

import uuid
from typing import Any

from tests.engine.conftest import GateAgent, Runs, engine_settings, running_engine, step
from tests.schedules.helpers import AUTH

ONE_ATTEMPT = {"max_attempts": 1}


def _spec(held: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "engine-limits",
        "inputs": {"slow_limit_s": {"type": "number", "default": None}},
        "steps": [held],
    }


async def _submit(runs: Runs, spec: dict[str, Any], inputs: dict[str, Any]) -> Any:
    return await runs.api.post("/coordinate", json={"spec": spec, "inputs": inputs}, headers=AUTH)


async def test_the_run_s_input_replaces_the_step_s_time_limit(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    held = {**step("slow", hold=True), "timeout_s": 600, "timeout_from": "slow_limit_s",
            "retry": ONE_ATTEMPT}  # fmt: skip
    async with running_engine(engine_settings(module_env, gate, "engine-a")):
        response = await _submit(runs, _spec(held), {"slow_limit_s": 0.5})
        assert response.status_code == 202, response.text
        run_id = uuid.UUID(response.json()["run_id"])
        assert await runs.ended(run_id, within_s=20) == "FAILED"
    slow = (await runs.steps(run_id))["slow"]
    assert slow.status == "TIMED_OUT"
    assert slow.error["message"].endswith("did not answer within 0.5s")


async def test_a_limit_out_of_bounds_is_a_422_naming_the_input_and_starts_nothing(
    gate: GateAgent, runs: Runs
) -> None:
    held = {**step("slow"), "timeout_from": "slow_limit_s"}
    response = await _submit(runs, _spec(held), {"slow_limit_s": 0})
    assert response.status_code == 422, response.text
    assert "inputs.slow_limit_s" in response.text
    assert gate.calls == []
