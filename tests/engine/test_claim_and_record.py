"""Claiming and recording, through the engine's own loops: a submitted run is started, each
step claimed by exactly one replica, called once, and its result recorded with its event."""

from __future__ import annotations

import asyncio

from tests.engine.conftest import GateAgent, Runs, engine_settings, running_engine, step


async def test_a_run_is_started_its_steps_claimed_in_order_and_their_results_recorded(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    run_id = await runs.submit(step("a"), step("b", "a"), step("c", "a"))
    async with running_engine(engine_settings(module_env, gate, "engine-a")):
        assert await runs.ended(run_id) == "SUCCEEDED"
    steps = await runs.steps(run_id)
    assert gate.calls[0] == "a" and sorted(gate.calls[1:]) == ["b", "c"]
    for step_id, row in steps.items():
        assert row.status == "SUCCEEDED"
        assert row.output == {"step": step_id, "call": 1}
        assert row.attempts == 1
        assert row.lease_owner is None and row.lease_expires_at is None
        [attempt] = row.attempt_log
        assert attempt["worker"] == "engine-a"
    events = await runs.events(run_id)
    for step_id in "abc":
        started = events.index(("ingestion.step.started", step_id))
        assert started < events.index(("ingestion.step.succeeded", step_id))
    assert events[-1] == ("ingestion.workflow.completed", None)


async def test_a_retryable_failure_is_recorded_and_the_step_claimed_again(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    flaky = step("a", fail_first=True)
    flaky["retry"] = {"max_attempts": 2, "initial_interval_s": 0.1}
    run_id = await runs.submit(flaky)
    async with running_engine(engine_settings(module_env, gate, "engine-a")):
        assert await runs.ended(run_id) == "SUCCEEDED"
    row = (await runs.steps(run_id))["a"]
    assert row.attempts == 2 and row.output == {"step": "a", "call": 2}
    first, second = row.attempt_log
    assert first["outcome"] == "failed" and first["error"]["code"] == "flaky"
    assert second["outcome"] == "succeeded"
    assert gate.called("a") == 2


async def test_two_replicas_claim_each_step_once(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    """FOR UPDATE SKIP LOCKED: replicas claiming at the same time never share a step."""
    run_ids = [await runs.submit(step(f"s{i}"), step(f"t{i}")) for i in range(15)]
    settings = [
        engine_settings(module_env, gate, name, concurrency=4, claim_batch=2, sticky_seconds=0)
        for name in ("engine-a", "engine-b")
    ]
    async with running_engine(settings[0]), running_engine(settings[1]):
        assert await asyncio.gather(*(runs.ended(r) for r in run_ids)) == ["SUCCEEDED"] * 15
    assert sorted(gate.calls) == sorted(f"{p}{i}" for i in range(15) for p in "st")
    workers = set()
    for run_id in run_ids:
        for row in (await runs.steps(run_id)).values():
            [attempt] = row.attempt_log
            workers.add(attempt["worker"])
    assert workers <= {"engine-a", "engine-b"}
