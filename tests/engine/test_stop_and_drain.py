"""Stopping runs and stopping the engine, through the engine's own loops and app lifecycle: a
cancel cuts the call in flight and cancels what waits; a shutdown lets in-flight steps finish
within the grace period, claims nothing new, and gives back what did not finish."""

from __future__ import annotations

import asyncio

from services.workflow_engine.app import create_app
from tests.engine.conftest import (
    GateAgent,
    Runs,
    engine_settings,
    running_engine,
    step,
    wait_for_call,
)
from tests.polling import eventually


async def test_a_cancel_cuts_the_call_in_flight_and_cancels_the_steps_waiting(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    async with running_engine(engine_settings(module_env, gate, "engine-a")):
        run_id = await runs.submit(step("slow", hold=True), step("after", "slow"))
        await wait_for_call(gate, "slow")
        await runs.cancel(run_id)
        assert await runs.ended(run_id, within_s=15) == "CANCELLED"
    steps = await runs.steps(run_id)
    assert steps["slow"].status == "CANCELLED"
    assert steps["slow"].error["code"] == "cancelled"
    assert steps["after"].status == "CANCELLED"
    assert gate.inside == 1  # the agent still holds the call the engine gave up on
    assert gate.called("after") == 0
    events = await runs.events(run_id)
    assert ("ingestion.step.cancelled", "slow") in events
    assert ("ingestion.step.cancelled", "after") in events
    assert events[-1] == ("ingestion.workflow.cancelled", None)


async def test_a_run_past_its_deadline_is_stopped(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    async with running_engine(engine_settings(module_env, gate, "engine-a")):
        run_id = await runs.submit(step("slow", hold=True), step("after", "slow"), timeout_s=1)
        await wait_for_call(gate, "slow")
        final = await runs.ended(run_id, within_s=15)
    steps = await runs.steps(run_id)
    assert (final, steps["slow"].status, steps["after"].status) == (
        "FAILED",
        "TIMED_OUT",
        "CANCELLED",
    )
    assert steps["slow"].error["code"] == "run_timeout"
    assert gate.called("after") == 0


async def test_a_shutdown_lets_steps_in_flight_finish_and_claims_nothing_new(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    app = create_app(engine_settings(module_env, gate, "engine-a", shutdown_grace_s=30))
    running = app.router.lifespan_context(app)
    await running.__aenter__()
    first = await runs.submit(step("slow", hold=True))
    await wait_for_call(gate, "slow")
    shutdown = asyncio.create_task(running.__aexit__(None, None, None))
    await eventually(lambda: app.state.executor.stopping)
    later = await runs.submit(step("later"))  # admitted while the engine drains
    gate.opened.set()
    await asyncio.wait_for(shutdown, 30)
    assert (await runs.steps(first))["slow"].status == "SUCCEEDED"
    assert await runs.status(first) == "SUCCEEDED"
    assert await runs.status(later) == "PENDING"  # left to the other replicas
    assert gate.called("later") == 0
    async with running_engine(engine_settings(module_env, gate, "engine-b")):
        assert await runs.ended(later) == "SUCCEEDED"


async def test_steps_unfinished_at_shutdown_are_given_back_for_another_replica(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    app = create_app(engine_settings(module_env, gate, "engine-a", shutdown_grace_s=0.2))
    async with app.router.lifespan_context(app):
        run_id = await runs.submit(step("slow", hold=True))
        await wait_for_call(gate, "slow")
    row = (await runs.steps(run_id))["slow"]
    # Released, not failed: the attempt is not counted, and nobody's affinity holds it back.
    assert (row.status, row.lease_owner, row.affinity, row.attempts) == ("READY", None, None, 0)
    gate.opened.set()
    async with running_engine(engine_settings(module_env, gate, "engine-b", sticky_seconds=3600)):
        assert await runs.ended(run_id) == "SUCCEEDED"
    row = (await runs.steps(run_id))["slow"]
    assert [a["worker"] for a in row.attempt_log] == ["engine-b"]
    assert gate.called("slow") == 2
