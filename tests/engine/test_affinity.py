"""Run affinity between engine replicas, through their own loops: a run stays on the replica
that started it while that one keeps up, and moves once its steps have waited `sticky_seconds`."""

from __future__ import annotations

from tests.engine.conftest import (
    GateAgent,
    Runs,
    engine_settings,
    running_engine,
    step,
    wait_for_call,
)

LONG = 3600.0  # a sticky wait no test reaches


def _workers(row: object) -> list[str]:
    return [a["worker"] for a in row.attempt_log]  # type: ignore[attr-defined]


async def test_a_runs_steps_stay_on_the_replica_that_started_it(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    """Two idle replicas: whichever starts the run claims every one of its steps, though the
    other could take any of the eight that become ready at once."""
    replicas = [
        engine_settings(module_env, gate, name, sticky_seconds=LONG)
        for name in ("engine-a", "engine-b")
    ]
    fan = [step(f"x{i}", "root") for i in range(8)]
    async with running_engine(replicas[0]), running_engine(replicas[1]):
        run_id = await runs.submit(step("root"), *fan, step("end", *(s["id"] for s in fan)))
        assert await runs.ended(run_id) == "SUCCEEDED"
    steps = await runs.steps(run_id)
    workers = {w for row in steps.values() for w in _workers(row)}
    assert len(workers) == 1, {step_id: _workers(row) for step_id, row in steps.items()}


async def test_steps_that_waited_out_the_sticky_time_are_taken_over_and_the_run_follows(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    """engine-a (one step at a time) is held by `a`; `b`, meant for it too, waits until engine-b
    takes it after its sticky wait, and `c` (after `b`) follows the run to engine-b."""
    busy = engine_settings(module_env, gate, "engine-a", concurrency=1, sticky_seconds=LONG)
    helper = engine_settings(module_env, gate, "engine-b", sticky_seconds=0.3)
    async with running_engine(busy):
        run_id = await runs.submit(
            step("root"), step("a", "root", hold=True), step("b", "root"), step("c", "b")
        )
        await wait_for_call(gate, "a")  # claimed first: steps are claimed in their order
        assert (await runs.steps(run_id))["b"].status == "READY"
        async with running_engine(helper):
            await runs.step_is(run_id, "c", "SUCCEEDED")
            gate.opened.set()
            assert await runs.ended(run_id) == "SUCCEEDED"
    steps = await runs.steps(run_id)
    assert {step_id: _workers(row) for step_id, row in steps.items()} == {
        "root": ["engine-a"],
        "a": ["engine-a"],
        "b": ["engine-b"],
        "c": ["engine-b"],
    }
