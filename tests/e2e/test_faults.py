"""The fault harness: the whole platform as real processes on a schema, a Redis and a stream
prefix of its own, under SIGKILLs, outages, restarts and failing agents.

Each scenario asserts exact counts taken from the agents' own records: lost runs = 0, effects
done more than once = 0, events missing from the streams = 0. `make chaos` runs the same
scenarios bigger and prints the counts (bench/chaos.py).
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from launcher.processes import Service, free_port
from tests.conftest import DATABASE_URL
from tests.e2e import scenarios, scenarios_destinations, scenarios_fetch
from tests.e2e.chaos import ChaosPlatform, start_platform, stop_platform
from tests.e2e.faults import postgres_restart_command
from tests.e2e.scenarios_fetch import POLICY, as_json, fetch

# Starting eight processes and pushing hundreds of runs through them on a shared 2-core machine.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosPlatform]:
    """The platform under fault, started once for this module."""
    platform = start_platform(tmp_path_factory.mktemp("chaos"))
    try:
        yield platform
    finally:
        stop_platform(platform)


async def test_engine_sigkilled_every_few_seconds_loses_and_repeats_nothing(
    chaos: ChaosPlatform,
) -> None:
    """Scenario 1: 120 three-step runs while the only engine is SIGKILLed and restarted (in five
    waves, a kill in each; `make chaos` runs more)."""
    counts = await scenarios.engine_crashes(chaos, runs=120)
    counts.assert_clean()
    assert counts.faults >= 5  # one kill per wave of runs, at least
    assert counts.outcomes == {"SUCCEEDED": 120}, counts
    assert counts.notes["rows_merged"] == 120 * scenarios.ROWS


async def test_two_replicas_share_the_work_while_one_is_sigkilled(chaos: ChaosPlatform) -> None:
    """Scenario 2: the same with a second replica that keeps running."""
    counts = await scenarios.engine_crashes(chaos, runs=120, replicas=2)
    counts.assert_clean()
    assert counts.faults >= 5
    assert counts.outcomes == {"SUCCEEDED": 120}, counts
    assert counts.notes["rows_merged"] == 120 * scenarios.ROWS


async def test_redis_outage_delays_events_and_loses_none(chaos: ChaosPlatform) -> None:
    """Scenario 3: Redis killed mid-run: work goes on, events wait in the outbox, then arrive."""
    counts = await scenarios.redis_outage(chaos, runs=60)
    counts.assert_clean()
    assert counts.outcomes == {"SUCCEEDED": 60}, counts
    assert counts.notes["events_during_outage"] > 0  # written while Redis was away...
    assert counts.events_missing == 0  # ...and every one delivered afterwards
    assert counts.notes["engine_health_during_outage"] == "degraded"


async def test_agent_failures_are_retried_per_policy_then_compensated(
    chaos: ChaosPlatform,
) -> None:
    """Scenario 5: 503s, resets, hangs, Retry-After, a 404, a dead endpoint and failing undos,
    with every third reply from the agent lost on its way back to the engine."""
    counts, details = await scenarios_fetch.flaky_agent(chaos, per_case=4)
    counts.assert_clean()
    assert counts.notes["unexpected_status"] == 0, counts.outcomes
    assert counts.faults > 0, "no reply was lost"
    log = chaos.external.log
    groups = {case: [_group(run) for run in runs] for case, runs in details.items()}

    for run in details["transient"]:
        steps = _steps(run)
        assert steps["publish"]["attempt_log"][0]["outcome"] == "timed_out"  # the hang
        for step in steps.values():  # every attempt is visible in GET /workflows/{id}
            assert len(step["attempt_log"]) == step["attempts"]
    for group in groups["transient"]:  # the outside saw each failure once, then one success
        assert log.seen[f"/flaky/503/2/{group}/stage.csv"] == 3
        assert log.seen[f"/flaky/reset/2/{group}/load.csv"] == 3
    waits = [w for run in details["retry_after"] for w in await _retry_waits(chaos, run, "stage")]
    assert waits and min(waits) >= 1.0  # Retry-After: 1 beat the policy's 0.2s, 0.4s
    for case in ("rejected", "undo_retried", "undo_fails"):
        for group in groups[case]:  # not retryable: one call, whatever replies were lost
            assert log.seen[f"/missing/{group}/publish.csv"] == 1
    for run, group in zip(details["exhausted"], groups["exhausted"], strict=True):
        assert _steps(run)["publish"]["attempts"] == POLICY["max_attempts"]
        assert log.seen[f"/down/{group}/publish.csv"] == POLICY["max_attempts"]
    for case in ("rejected", "exhausted", "undo_retried"):
        for run, group in zip(details[case], groups[case], strict=True):
            steps = _steps(run)
            assert steps["stage"]["status"] == steps["load"]["status"] == "COMPENSATED"
            undone = [p for p in chaos.external.undone if f"/{group}/" in p]
            assert [p.rsplit("/", 1)[-1] for p in undone] == ["undo-load", "undo-stage"]
    for run in details["rejected"]:  # the saga in the event stream, one event per undo
        types = await _event_types(chaos, run)
        assert types.count("ingestion.workflow.compensating") == 1
        assert types.count("ingestion.step.compensated") == 2
        assert types[-1] == "ingestion.workflow.compensated"
    for group in groups["undo_retried"]:
        assert log.seen[f"/undoflaky/2/{group}/undo-load"] == 3
    for run in details["undo_fails"]:
        undo = _steps(run, role="compensation")["stage"]
        assert undo["status"] == "FAILED" and undo["attempts"] == POLICY["max_attempts"]


async def test_cancel_during_a_fanout_stops_new_work_and_ends_cancelled(
    chaos: ChaosPlatform,
) -> None:
    """Scenario 6: cancelling fan-outs mid-way: in-flight calls are cut (CANCELLED, not
    FAILED), nothing starts afterwards, and the saga variant undoes its first step."""
    counts, facts = await scenarios_fetch.cancel_fanout(chaos, items=40, concurrency=4)
    counts.assert_clean()
    assert facts["statuses"] == {"plain": "CANCELLED", "saga": "COMPENSATED"}
    for kind in ("plain", "saga"):
        children = facts[kind]["children"]
        assert set(children) <= {"SUCCEEDED", "CANCELLED"}, children
        assert children["SUCCEEDED"] + children["CANCELLED"] == 40
        assert 4 <= children["SUCCEEDED"] < 40
        assert facts[kind]["peak"] <= 4
        assert facts[kind]["requests_after_end"] == 0
    assert facts["plain"]["undone"] == []
    assert [p.rsplit("/", 1)[-1] for p in facts["saga"]["undone"]] == ["undo-prepare"]


async def test_a_fanout_of_1000_elements_keeps_its_window_and_its_order(
    chaos: ChaosPlatform,
) -> None:
    """1,000 elements at map_concurrency 10: never more than 10 calls at once, output ordered."""
    counts, facts = await scenarios_fetch.bulk_fanout(chaos, items=1000, concurrency=10)
    counts.assert_clean()
    assert facts["status"] == "SUCCEEDED"
    assert 1 <= facts["peak"] <= 10
    assert facts["served"] == 1000
    assert facts["output_urls"] == facts["expected_urls"]


async def test_sigterm_finishes_in_flight_steps_or_releases_them_at_the_deadline(
    chaos: ChaosPlatform,
) -> None:
    """Graceful shutdown: a step that finishes within the grace period is recorded by the
    stopping engine (its lease kept alive meanwhile: the other replica does not take it over);
    one that does not is released, taken over at once, and its effect still happens once."""
    first = chaos.engines[0]
    await asyncio.to_thread(first.stop)  # only the engine under test may claim
    stopping = Service(
        "workflow-engine-sigterm",
        "services.workflow_engine.app",
        free_port(),
        {**chaos.env, "ENGINE_SHUTDOWN_GRACE_S": "6"},
        chaos.log_dir / "workflow-engine-sigterm.log",
    )
    stopping.start()
    try:
        await asyncio.to_thread(stopping.wait_healthy, 180)
        quick, slow = f"quick-{uuid.uuid4().hex[:6]}", f"slow-{uuid.uuid4().hex[:6]}"
        spec = {
            "name": "chaos-sigterm",
            "steps": [
                {
                    "id": step,
                    "agent": "data-fetch-retry",
                    "action": "fetch",
                    "params": fetch(chaos.external.url(f"gate/{group}/{step}.csv")),
                    "retry": POLICY,
                    "timeout_s": 120,
                }
                for step, group in (("quick", quick), ("slow", slow))
            ],
        }
        [run_id] = await chaos.submit(spec, [{}])
        await _until_running(chaos, run_id, 2)
        await asyncio.to_thread(first.start)  # the other replica, up while the steps run
        await asyncio.to_thread(first.wait_healthy, 180)
        assert stopping.process is not None
        stopping.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(4)  # longer than a lease: an unrenewed one would be taken over
        chaos.external.open_gate(quick)
        # uvicorn re-raises the SIGTERM once shut down: -15, not -9 (SIGKILL after a hang).
        assert await asyncio.to_thread(stopping.process.wait, 60) in (0, -signal.SIGTERM)
        chaos.external.open_gate(slow)
        statuses = await chaos.wait_terminal([run_id], 120)
    finally:
        chaos.external.open_gate(quick)
        chaos.external.open_gate(slow)
        stopping.stop()
    assert statuses[run_id] == "SUCCEEDED"
    steps = _steps(await chaos.run_detail(run_id))
    quick_log = steps["quick"]["attempt_log"]
    assert [a["outcome"] for a in quick_log] == ["succeeded"], quick_log
    assert steps["quick"]["attempts"] == 1
    assert steps["slow"]["status"] == "SUCCEEDED"
    assert "lease_expired" not in [a["outcome"] for a in steps["slow"]["attempt_log"]]
    served = chaos.external.log.served("/gate/")
    assert served[f"/gate/{quick}/quick.csv"] == served[f"/gate/{slow}/slow.csv"] == 1
    executions = await chaos.query(
        "SELECT executions FROM agent_effects WHERE idempotency_key LIKE $1", f"{run_id}:%"
    )
    assert sorted(r["executions"] for r in executions) == [1, 1]


async def test_a_run_past_its_timeout_times_out_its_step_with_the_reason(
    chaos: ChaosPlatform,
) -> None:
    """Per-run timeout: the running step ends TIMED_OUT (not retried: the run has no time left)
    and the run FAILED, each with the reason."""
    group = f"deadline-{uuid.uuid4().hex[:6]}"
    spec = {
        "name": "chaos-deadline",
        "timeout_s": 3,
        "steps": [
            {
                "id": "long",
                "agent": "data-fetch-retry",
                "action": "fetch",
                "params": fetch(chaos.external.url(f"slow/8000/{group}/long.csv")),
                "retry": POLICY,
                "timeout_s": 60,
            },
            {
                "id": "after",
                "agent": "data-fetch-retry",
                "action": "fetch",
                "depends_on": ["long"],
                "params": fetch(chaos.external.url(f"ok/{group}/after.csv")),
            },
        ],
    }
    [run_id] = await chaos.submit(spec, [{}])
    assert (await chaos.wait_terminal([run_id], 60))[run_id] == "FAILED"
    run = await chaos.run_detail(run_id)
    assert "run exceeded its timeout_s" in run["error"]
    steps = _steps(run)
    assert steps["long"]["status"] == "TIMED_OUT", steps["long"]
    assert steps["long"]["attempts"] == 1
    assert "run exceeded its timeout_s" in steps["long"]["status_reason"]
    # Stopped by the deadline, or skipped because `long` did not succeed: whichever came first.
    assert (steps["after"]["status"], steps["after"]["status_reason"]) in {
        ("CANCELLED", "run exceeded its timeout_s"),
        ("SKIPPED", "upstream step did not succeed"),
    }


_PG_RESTART, _PG_WHY = postgres_restart_command(DATABASE_URL)


@pytest.mark.skipif(_PG_RESTART is None, reason=f"cannot restart PostgreSQL here: {_PG_WHY}")
async def test_postgres_restart_mid_run_leaves_no_run_stuck(chaos: ChaosPlatform) -> None:
    """Scenario 4: the database server restarts under the running platform (once, briefly:
    it interrupts everything else using the server too)."""
    counts = await scenarios.postgres_restart(chaos, runs=60)
    counts.assert_clean()
    assert counts.outcomes == {"SUCCEEDED": 60}, counts
    for service in [*chaos.services.values(), *chaos.engines]:
        await asyncio.to_thread(service.wait_healthy, 60)  # every service reconnected


@pytest.mark.parametrize("kind", scenarios_destinations.KINDS)
async def test_a_merger_sigkilled_mid_load_loads_each_batch_once(
    chaos: ChaosPlatform, kind: str
) -> None:
    """Each destination: appends while the merger is SIGKILLed and restarted; every run's rows
    are in the table exactly once (an append has no key that would hide a repeat). Two kills
    per destination here (each restart costs seconds of imports); `make chaos` runs four."""
    counts = await scenarios_destinations.merger_crashes(chaos, kind, runs=16, kills=2)
    counts.assert_clean()
    assert counts.faults == 2, counts
    assert counts.outcomes == {"SUCCEEDED": 16}, counts
    assert counts.notes["rows_loaded"] == 16 * scenarios.ROWS


@pytest.mark.skipif(_PG_RESTART is None, reason=f"cannot restart PostgreSQL here: {_PG_WHY}")
async def test_postgres_restart_mid_load_loads_each_batch_once_in_every_destination(
    chaos: ChaosPlatform,
) -> None:
    """The database restarts while runs append into a Delta, a DuckDB and a PostgreSQL table."""
    for counts in await scenarios_destinations.postgres_restart_during_loads(chaos, runs=20):
        counts.assert_clean()
        assert counts.outcomes == {"SUCCEEDED": 20}, counts
        assert counts.notes["rows_loaded"] == 20 * scenarios.ROWS, counts


# ---- helpers -----------------------------------------------------------------------------------


def _steps(run: dict[str, Any], role: str = "action") -> dict[str, dict[str, Any]]:
    return {s["step_id"]: s for s in run["steps"] if s["role"] == role}


def _group(run: dict[str, Any]) -> str:
    """The outside system's group of a saga run (the folder of its stage URL)."""
    return str(run["inputs"]["stage"].rsplit("/", 2)[-2])


async def _retry_waits(chaos: ChaosPlatform, run: dict[str, Any], step_id: str) -> list[float]:
    """The waits before each retry of `step_id` that followed a 503 from the outside."""
    rows = await chaos.query(
        "SELECT payload FROM event_outbox WHERE run_id = $1::uuid "
        "AND event_type = 'ingestion.step.retrying'",
        run["run_id"],
    )
    waits = []
    for row in rows:
        payload = as_json(row["payload"])
        # A lost reply (connection_error) is retried on the policy's own schedule: skip those.
        if payload.get("step_id") == step_id and payload["error"]["code"] == "fetch_exhausted":
            waits.append(float(payload["retry_in_s"]))
    return waits


async def _event_types(chaos: ChaosPlatform, run: dict[str, Any]) -> list[str]:
    """The run's events as delivered to the harness's consumer group, in sequence order."""
    await chaos.events.read()
    delivered = [
        deliveries[0]
        for deliveries in chaos.events.deliveries.values()
        if deliveries[0]["run_id"] == run["run_id"]
    ]
    return [e["type"] for e in sorted(delivered, key=lambda e: int(e["sequence"]))]


async def _until_running(chaos: ChaosPlatform, run_id: str, count: int) -> None:
    for _ in range(1200):
        [row] = await chaos.query(
            "SELECT count(*) AS n FROM step_runs WHERE run_id = $1::uuid AND status = 'RUNNING'",
            run_id,
        )
        if row["n"] >= count:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{count} steps of {run_id} never ran at once")
