"""Random sequences of the state operations (accept, hold, admit, start, claim, record every
outcome, fan out, expire and release leases, cancel, stop) against a real PostgreSQL; after
each one, every run's events replayed against the transition table must give exactly the
states of its run and step rows, with no event the table forbids."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.session import create_engine, create_sessionmaker
from shared.errors import Conflict
from shared.settings import CommonSettings
from shared.spec.models import WorkflowSpec
from shared.state.admission import admit_runs, hold_runs, note_unclaimed
from shared.state.history import StepKey, replay
from shared.state.leases import expire_leases, release_leases
from shared.state.runs import NewRun, create_runs, start_runs, startable_runs
from shared.state.steps import AttemptResult, ClaimedStep, claim_steps, record_results
from shared.state.stopping import request_cancel, stop_round
from tests.conftest import DATABASE_URL


def _step(id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "agent": "data-connector", "action": "noop", "depends_on": list(deps),
            "retry": {"max_attempts": 2}, **extra}  # fmt: skip


SPECS = [
    # a diamond
    {"name": "d", "steps": [_step("a"), _step("b", "a"), _step("c", "a"), _step("e", "b", "c")]},
    # a saga: both steps are undone when the last one fails
    {
        "name": "saga",
        "steps": [
            _step("a", compensate={"action": "noop"}),
            _step("b", "a", compensate={"action": "noop"}),
            _step("c", "b"),
        ],
    },
    # a fan-out, two items at once, and a step after it
    {
        "name": "map",
        "inputs": {"items": {"type": "array", "default": [1, 2, 3]}},
        "steps": [
            _step("m", map_over="${inputs.items}", map_concurrency=2),
            _step("z", "m"),
        ],
    },
]
OUTCOMES = ("succeeded", "failed", "retry", "timed_out", "cancelled")
OPS = (
    "submit",
    "admit",
    "hold",
    "unclaimed",
    "start",
    "claim",
    "record",
    "record",
    "work",
    "work",
    "work",
    "expire",
    "release",
    "release",
    "cancel",
    "stop",
)


class World:
    """The operations, driven as engines and the controller would."""

    def __init__(self, db: async_sessionmaker, schema: str) -> None:
        self.db, self.schema = db, schema
        self.runs: list[uuid.UUID] = []
        self.held: list[uuid.UUID] = []
        self.claims: list[ClaimedStep] = []
        self.sagas: set[uuid.UUID] = set()

    async def do(self, op: str, n: int) -> None:
        async with self.db() as session, session.begin():
            await getattr(self, op)(session, n)

    async def submit(self, session: Any, n: int) -> None:
        spec = WorkflowSpec.model_validate(SPECS[n % len(SPECS)])
        admitted = n % 4 != 3
        new = NewRun(spec=spec, inputs={}, admitted=admitted,
                     status_reason=None if admitted else "held: cap")  # fmt: skip
        [run] = await create_runs(session, [new], schema=self.schema)
        self.runs.append(run.id)
        if spec.name == "saga":
            self.sagas.add(run.id)
        if not admitted:
            self.held.append(run.id)

    async def admit(self, session: Any, n: int) -> None:
        await admit_runs(session, self.held[: n % 3], schema=self.schema)

    async def hold(self, session: Any, n: int) -> None:
        await hold_runs(session, dict.fromkeys(self.held, f"held: reason {n}"), schema=self.schema)

    async def unclaimed(self, session: Any, n: int) -> None:
        await note_unclaimed(session, after_s=0, reason=f"no engine {n}", schema=self.schema)

    async def start(self, session: Any, n: int) -> None:
        ids = await startable_runs(session, limit=n % 3 + 1)
        await start_runs(session, ids, schema=self.schema, owner="w0")

    async def claim(self, session: Any, n: int) -> None:
        # An odd n takes a lease that is over at once (the reaper may then take it back).
        lease_s = 0.0 if n % 2 else 30.0
        self.claims += await claim_steps(
            session, owner=f"w{n % 2}", limit=n % 4 + 1, lease_s=lease_s, schema=self.schema
        )

    async def record(self, session: Any, n: int) -> None:
        if not self.claims:
            return
        step = self.claims.pop(n % len(self.claims))
        outcome = OUTCOMES[n % len(OUTCOMES)] if n % 3 else "succeeded"
        if step.run_id in self.sagas and step.step_id == "c":
            outcome = "failed"  # the saga's last step always fails: its run compensates
        result = AttemptResult(step=step, outcome="failed", worker=f"w{n % 2}")
        if step.step_id == "m" and step.map_index == -1 and step.role == "action":
            result = AttemptResult(step=step, outcome="succeeded", worker=result.worker,
                                   map_items=[1, 2, 3][: n % 4], fanout_limit=2)  # fmt: skip
        elif outcome == "retry":
            result.retry_in_s = 0.0
            result.error = {"code": "busy", "message": "try again"}
        else:
            result.outcome = outcome  # type: ignore[assignment]
            result.output = {"n": n} if outcome == "succeeded" else None
            result.error = None if outcome == "succeeded" else {"code": "x", "message": "no"}
        await record_results(session, [result], schema=self.schema, owner=result.worker)

    async def work(self, session: Any, n: int) -> None:
        """Claim steps and record a result for each, mostly successes."""
        owner = f"w{n % 2}"
        self.claims += await claim_steps(
            session, owner=owner, limit=4, lease_s=30.0, schema=self.schema
        )
        for i in range(len(self.claims)):
            await self.record(session, 0 if (n + i) % 4 else n + i)

    async def expire(self, session: Any, n: int) -> None:
        await expire_leases(session, limit=n + 1, schema=self.schema)

    async def release(self, session: Any, n: int) -> None:
        """Claim, then give back (a shutdown) some of what this owner holds."""
        owner = f"w{n % 2}"
        await self.claim(session, n % 2 + 2 * (n // 2))
        ids = [c.id for c in self.claims[n % 2 :: 2]]
        await release_leases(session, owner=owner, step_ids=ids, schema=self.schema)

    async def cancel(self, session: Any, n: int) -> None:
        if self.runs:
            run_id = self.runs[n % len(self.runs)]
            # A run that has ended refuses (and its savepoint rolls back).
            with contextlib.suppress(Conflict):
                async with session.begin_nested():
                    await request_cancel(session, run_id, reason="user", schema=self.schema)

    async def stop(self, session: Any, n: int) -> None:
        await stop_round(session, runs=n % 3 + 1, schema=self.schema, batch=n % 2 + 1)

    async def problems(self) -> list[str]:
        """Each run's replayed events compared with its rows."""
        async with self.db() as session:
            events = (
                await session.execute(text("SELECT run_id, payload FROM event_outbox ORDER BY id"))
            ).all()
            runs = dict((await session.execute(text("SELECT id, status FROM workflow_runs"))).all())
            step_rows = await session.execute(
                text("SELECT run_id, step_id, role, map_index, status FROM step_runs")
            )
            steps: dict[uuid.UUID, dict[StepKey, str]] = {}
            for row in step_rows:
                key = (row.step_id, row.role, row.map_index)
                steps.setdefault(row.run_id, {})[key] = row.status
        per_run: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for row in events:
            per_run.setdefault(row.run_id, []).append(row.payload)
        return [
            f"{run_id}: {problem}"
            for run_id in runs.keys() | per_run.keys()
            for problem in replay(per_run.get(run_id, [])).compare(
                runs.get(run_id), steps.get(run_id, {})
            )
        ]


async def _play(schema: str, ops: list[tuple[str, int]]) -> None:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    try:
        db = create_sessionmaker(engine)
        async with db() as session, session.begin():
            await session.execute(text("TRUNCATE workflow_runs, step_runs, event_outbox CASCADE"))
        world = World(db, schema)
        done = []
        # one run of each spec started, then the drawn operations
        for op, n in [("submit", 0), ("submit", 1), ("submit", 2), ("start", 2), *ops]:
            await world.do(op, n)
            done.append(f"{op}({n})")
            problems = await world.problems()
            assert not problems, f"after {' '.join(done)}: {problems}"
    finally:
        await engine.dispose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 11)), min_size=5, max_size=40))
def test_events_replay_to_the_tables(schema: str, ops: list[tuple[str, int]]) -> None:
    asyncio.run(_play(schema, ops))


def test_the_replay_catches_a_change_without_its_event() -> None:
    """The check itself can fail: a READY step with no event, an event the table forbids."""
    events = [{"type": "ingestion.workflow.pending"}, {"type": "ingestion.workflow.started"}]
    silent = replay(events).compare("RUNNING", {("a", "action", -1): "READY"})
    assert silent == ["step ('a', 'action', -1) is READY, no event says so"]
    forbidden = [*events, {"type": "ingestion.step.started", "step_id": "a"}]  # not READY
    assert replay(forbidden).problems == [
        "ingestion.step.started for step ('a', 'action', -1) while it is PENDING or absent"
    ]
    assert replay([{"type": "ingestion.workflow.started"}]).problems
    assert replay(events).compare("PENDING", {}) == ["run is PENDING, its events say RUNNING"]
