"""The state machine driven directly, as an engine would: claims, results, retries, leases,
fan-out, failure propagation, cancellation and saga compensation, on a real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.spec.models import WorkflowSpec
from shared.state.leases import expire_leases
from shared.state.runs import NewRun, create_runs, start_runs
from shared.state.steps import AttemptResult, ClaimedStep, claim_steps, record_results
from shared.state.stopping import request_cancel


class Harness:
    def __init__(self, sessionmaker: async_sessionmaker, schema: str) -> None:
        self.sessionmaker = sessionmaker
        self.schema = schema
        self.run_id = uuid.uuid4()

    async def start(self, spec: dict[str, Any], inputs: dict[str, Any] | None = None) -> None:
        async with self.sessionmaker() as session, session.begin():
            await create_runs(
                session,
                [
                    NewRun(
                        spec=WorkflowSpec.model_validate(spec),
                        inputs=inputs or {},
                        run_id=self.run_id,
                    )
                ],
                schema=self.schema,
            )
        async with self.sessionmaker() as session, session.begin():
            assert await start_runs(session, [self.run_id], schema=self.schema)

    async def claim(self, owner: str = "w1", lease_s: float = 30) -> list[ClaimedStep]:
        """Claim this run's runnable steps only (other tests share the schema)."""
        async with self.sessionmaker() as session, session.begin():
            claimed = await claim_steps(
                session, owner=owner, limit=1000, lease_s=lease_s, schema=self.schema
            )
        mine = [c for c in claimed if c.run_id == self.run_id]
        assert len(mine) == len(claimed), "claimed another test's steps"
        return mine

    async def record(self, *results: AttemptResult) -> None:
        async with self.sessionmaker() as session, session.begin():
            await record_results(session, list(results), schema=self.schema)

    async def steps(self) -> dict[str, str]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                text("SELECT step_id, role, map_index, status FROM step_runs WHERE run_id = :r"),
                {"r": self.run_id},
            )
            out = {}
            for row in rows:
                key = row.step_id
                if row.role != "action":
                    key += f"~{row.role}"
                if row.map_index >= 0:
                    key += f"[{row.map_index}]"
                out[key] = row.status
            return out

    async def run(self) -> Any:
        async with self.sessionmaker() as session:
            return (
                await session.execute(
                    text("SELECT * FROM workflow_runs WHERE id = :r"), {"r": self.run_id}
                )
            ).one()


def ok(step: ClaimedStep, output: Any = None, owner: str = "w1") -> AttemptResult:
    return AttemptResult(
        step=step, outcome="succeeded", output=output or {"ok": True}, worker=owner
    )


def fail(step: ClaimedStep, retry_in_s: float | None = None) -> AttemptResult:
    return AttemptResult(
        step=step,
        outcome="failed",
        worker="w1",
        retry_in_s=retry_in_s,
        error={"code": "boom", "message": "it broke", "retryable": retry_in_s is not None},
    )


def s(step_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "agent": "data-connector",
        "action": "noop",
        "depends_on": list(deps),
        **extra,
    }


@pytest.fixture
def harness(db: async_sessionmaker, schema: str) -> Harness:
    return Harness(db, schema)


# Isolation: claim_steps takes any READY step in the schema. Tests in this module run one at a
# time and each finishes its run, so only its own steps are ever READY while it claims.


async def test_diamond_runs_in_dependency_order_and_succeeds(harness: Harness) -> None:
    b = s("b", "a", params={"rows": "${steps.a.output.rows}"})
    await harness.start({"name": "d", "steps": [s("a"), b, s("c", "a"), s("d", "b", "c")]})
    [a] = await harness.claim()
    assert a.step_id == "a" and a.attempts == 1
    await harness.record(ok(a, {"rows": 3}))
    b_and_c = sorted(await harness.claim(), key=lambda c: c.step_id)
    assert [c.step_id for c in b_and_c] == ["b", "c"]
    # each claim carries the outputs its step's templates reference, and only those
    assert b_and_c[0].outputs == {"a": {"rows": 3}}
    assert b_and_c[1].outputs == {}
    await harness.record(ok(b_and_c[0]))
    assert await harness.claim() == []  # d waits for both
    await harness.record(ok(b_and_c[1]))
    [d] = await harness.claim()
    await harness.record(ok(d))
    assert (await harness.run()).status == "SUCCEEDED"


async def test_retry_wait_then_failure_skips_downstream_and_names_the_step(
    harness: Harness,
) -> None:
    await harness.start({"name": "f", "steps": [s("a"), s("b", "a"), s("c")]})
    claimed = {c.step_id: c for c in await harness.claim()}
    await harness.record(fail(claimed["a"], retry_in_s=0.0), ok(claimed["c"]))
    assert (await harness.steps())["a"] == "RETRY_WAIT"
    [again] = await harness.claim()
    assert again.step_id == "a" and again.attempts == 2
    await harness.record(fail(again))
    steps = await harness.steps()
    assert steps == {"a": "FAILED", "b": "SKIPPED", "c": "SUCCEEDED"}
    run = await harness.run()
    assert run.status == "FAILED" and run.failed_step == "a" and "it broke" in run.error


async def test_durable_retry_time_is_respected(harness: Harness) -> None:
    await harness.start({"name": "r", "steps": [s("a")]})
    [a] = await harness.claim()
    await harness.record(fail(a, retry_in_s=3600))
    assert await harness.claim() == []  # not before next_attempt_at
    async with harness.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE step_runs SET next_attempt_at = now() WHERE run_id = :r"),
            {"r": harness.run_id},
        )
    [again] = await harness.claim()
    await harness.record(ok(again))
    assert (await harness.run()).status == "SUCCEEDED"


async def test_expired_lease_requeues_without_spending_an_attempt(harness: Harness) -> None:
    await harness.start({"name": "l", "steps": [s("a")]})
    [a] = await harness.claim(owner="dead", lease_s=0.001)
    async with harness.sessionmaker() as session, session.begin():
        assert await expire_leases(session, limit=100, schema=harness.schema) >= 1
    [again] = await harness.claim(owner="alive")
    assert again.attempts == 1  # the lost attempt does not count
    # The dead worker's late result is ignored: it no longer holds the lease.
    await harness.record(ok(a, {"from": "dead"}, owner="dead"))
    assert (await harness.steps())["a"] == "RUNNING"
    await harness.record(ok(again, {"from": "alive"}, owner="alive"))
    async with harness.sessionmaker() as session:
        output = (
            await session.execute(
                text("SELECT output FROM step_runs WHERE run_id = :r"), {"r": harness.run_id}
            )
        ).scalar_one()
    assert output == {"from": "alive"}


async def test_map_over_keeps_the_window_and_orders_outputs(harness: Harness) -> None:
    spec = {
        "name": "m",
        "inputs": {"files": {"type": "array"}},
        "steps": [
            s("fan", map_over="${inputs.files}", map_concurrency=2, params={"f": "${item}"}),
            s("after", "fan", params={"all": "${steps.fan.output}"}),
        ],
    }
    await harness.start(spec, {"files": ["x", "y", "z", "w", "v"]})
    [parent] = await harness.claim()
    await harness.record(
        AttemptResult(
            step=parent,
            outcome="succeeded",
            worker="w1",
            map_items=["x", "y", "z", "w", "v"],
            fanout_limit=2,
        )
    )
    done: dict[int, ClaimedStep] = {}
    while len(done) < 5:
        batch = await harness.claim()
        assert 1 <= len(batch) <= 2, "window of 2 exceeded"
        for child in batch:
            done[child.map_index] = child
        # finish in reverse order: outputs must still come back in item order
        await harness.record(*[ok(c, {"i": c.map_index}) for c in reversed(batch)])
    [after] = await harness.claim()
    assert after.outputs["fan"] == [{"i": i} for i in range(5)]
    await harness.record(ok(after))
    assert (await harness.run()).status == "SUCCEEDED"


async def test_failed_map_item_cancels_the_rest_and_fails_the_step(harness: Harness) -> None:
    spec = {"name": "mf", "steps": [s("fan", map_over="${run.id}", map_concurrency=1)]}
    await harness.start(spec)
    [parent] = await harness.claim()
    await harness.record(
        AttemptResult(
            step=parent, outcome="succeeded", worker="w1", map_items=[1, 2, 3], fanout_limit=1
        )
    )
    [first] = await harness.claim()
    await harness.record(fail(first))
    steps = await harness.steps()
    assert steps["fan[0]"] == "FAILED"
    assert steps["fan[1]"] == steps["fan[2]"] == "CANCELLED"
    assert steps["fan"] == "FAILED"
    assert (await harness.run()).status == "FAILED"


async def test_failure_compensates_succeeded_steps_in_reverse_order(harness: Harness) -> None:
    undo = {"compensate": {"action": "noop", "params": {"undo": "${steps.extract.output.id}"}}}
    spec = {
        "name": "saga",
        "steps": [
            s("extract", **undo),
            s("load", "extract", **{"compensate": {"action": "noop"}}),
            s("publish", "load"),
        ],
    }
    await harness.start(spec)
    [extract] = await harness.claim()
    await harness.record(ok(extract, {"id": "e1"}))
    [load] = await harness.claim()
    await harness.record(ok(load, {"batch": 7}))
    [publish] = await harness.claim()
    await harness.record(fail(publish))
    run = await harness.run()
    assert run.status == "COMPENSATING" and "publish" in run.status_reason
    # load's compensation first; extract's waits for it
    [undo_load] = await harness.claim()
    assert (undo_load.step_id, undo_load.role) == ("load", "compensation")
    assert undo_load.outputs == {}  # its compensation references nothing
    assert await harness.claim() == []
    await harness.record(ok(undo_load))
    [undo_extract] = await harness.claim()
    assert undo_extract.step_id == "extract" and undo_extract.outputs == {"extract": {"id": "e1"}}
    await harness.record(ok(undo_extract))
    steps = await harness.steps()
    assert steps["load"] == steps["extract"] == "COMPENSATED" and steps["publish"] == "FAILED"
    assert (await harness.run()).status == "COMPENSATED"


async def test_failed_compensation_ends_compensation_failed(harness: Harness) -> None:
    spec = {"name": "saga2", "steps": [s("a", compensate={"action": "noop"}), s("b", "a")]}
    await harness.start(spec)
    [a] = await harness.claim()
    await harness.record(ok(a))
    [b] = await harness.claim()
    await harness.record(fail(b))
    [undo] = await harness.claim()
    await harness.record(fail(undo))
    assert (await harness.run()).status == "COMPENSATION_FAILED"


async def test_cancel_stops_new_steps_and_ends_cancelled(harness: Harness) -> None:
    await harness.start({"name": "c", "steps": [s("a"), s("b", "a"), s("c")]})
    claimed = {c.step_id: c for c in await harness.claim()}
    async with harness.sessionmaker() as session, session.begin():
        run = await request_cancel(session, harness.run_id, reason="user", schema=harness.schema)
        assert run.status == "RUNNING"  # a and c are still in flight
    await harness.record(ok(claimed["a"]), ok(claimed["c"]))
    steps = await harness.steps()
    assert steps["b"] == "CANCELLED"
    assert await harness.claim() == []
    run = await harness.run()
    assert run.status == "CANCELLED" and run.status_reason == "user"


async def test_outbox_has_every_transition_in_order(harness: Harness) -> None:
    await harness.start({"name": "o", "steps": [s("a")]})
    [a] = await harness.claim()
    await harness.record(ok(a))
    async with harness.sessionmaker() as session:
        types = (
            (
                await session.execute(
                    text("SELECT event_type FROM event_outbox WHERE run_id = :r ORDER BY id"),
                    {"r": harness.run_id},
                )
            )
            .scalars()
            .all()
        )
    assert types == [
        "ingestion.workflow.pending",
        "ingestion.workflow.started",
        "ingestion.step.ready",
        "ingestion.step.started",
        "ingestion.step.succeeded",
        "ingestion.workflow.completed",
    ]
