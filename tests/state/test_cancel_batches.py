"""Cancelling a run with a large fan-out: the request writes the run row alone and no step of
the run can be claimed from then on; the engines' stop rounds cancel the waiting steps in
bounded batches, each with its event, and the run ends as a one-statement cancel left it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from services.workflow_engine.settings import EngineSettings
from services.workflow_engine.worker import Executor
from shared.agent_client import AgentClient
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import Conflict
from shared.metrics import create_metrics
from shared.settings import CommonSettings
from shared.state.steps import AttemptResult, ClaimedStep
from shared.state.stopping import request_cancel, stop_round
from tests.conftest import DATABASE_URL, fresh_schema
from tests.polling import eventually
from tests.state.test_state_machine import Harness, ok, s

ITEMS = 3000
WINDOW = 50
BATCH = 400  # several rounds for the fan-out, so the batching is what is under test


@pytest.fixture
async def harness(schema: str) -> AsyncIterator[Harness]:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    yield Harness(create_sessionmaker(engine), schema)
    await engine.dispose()


async def fan_out(harness: Harness, items: int, **step: Any) -> list[ClaimedStep]:
    """Start a one-step map_over run, expand it to `items` children; the first window claimed."""
    spec = {"name": "big", "steps": [s("fan", map_over="${run.id}", **step)]}
    await harness.start(spec)
    [parent] = await harness.claim()
    await harness.record(
        AttemptResult(
            step=parent,
            outcome="succeeded",
            worker="w1",
            map_items=list(range(items)),
            fanout_limit=step.get("map_concurrency", WINDOW),
        )
    )
    return await harness.claim()


async def cancel(harness: Harness, reason: str = "user") -> str:
    async with harness.sessionmaker() as session, session.begin():
        run = await request_cancel(session, harness.run_id, reason=reason, schema=harness.schema)
        return str(run.status)


async def rows(harness: Harness, query: str) -> list[Any]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(text(query), {"r": harness.run_id})).all())


async def step_versions(harness: Harness) -> dict[int, str]:
    """Each step row's xmin: it changes whenever the row is written."""
    found = await rows(harness, "SELECT id, xmin::text AS v FROM step_runs WHERE run_id = :r")
    return {row.id: row.v for row in found}


async def children(harness: Harness) -> Counter[str]:
    found = await rows(
        harness,
        "SELECT status, count(*) AS n FROM step_runs WHERE run_id = :r AND map_index >= 0 "
        "GROUP BY status",
    )
    return Counter({row.status: row.n for row in found})


async def stop_until_done(harness: Harness, *, batch: int = BATCH) -> int:
    """Run the engines' stop rounds until none has work; how many rounds it took. Asserts that
    no round cancels more than `batch` steps."""
    rounds = 0
    while True:
        before = (await children(harness))["CANCELLED"]
        async with harness.sessionmaker() as session, session.begin():
            done = await stop_round(session, runs=100, schema=harness.schema, batch=batch)
        assert (await children(harness))["CANCELLED"] - before <= batch
        if not done.run_ids:
            return rounds
        rounds += 1


async def test_cancel_writes_the_run_alone_then_rounds_cancel_every_waiting_child(
    harness: Harness,
) -> None:
    window = await fan_out(harness, ITEMS, map_concurrency=WINDOW)
    assert len(window) == WINDOW
    await harness.record(*[ok(c) for c in window[:10]])  # 10 more children become READY
    in_flight = window[10:]
    before = await step_versions(harness)
    assert await children(harness) == {
        "SUCCEEDED": 10,
        "RUNNING": WINDOW - 10,
        "READY": 10,
        "PENDING": ITEMS - WINDOW - 10,
    }

    assert await cancel(harness) == "RUNNING"
    run = await harness.run()
    assert run.cancel_requested and run.status_reason == "user" and run.status == "RUNNING"
    assert await step_versions(harness) == before  # not one step row written by the request
    assert await harness.claim() == []  # READY children, but none may start now

    waiting = ITEMS - WINDOW
    rounds = await stop_until_done(harness)
    assert rounds >= waiting // BATCH
    assert await children(harness) == {
        "SUCCEEDED": 10,
        "RUNNING": WINDOW - 10,
        "CANCELLED": waiting,
    }
    assert (await harness.run()).status == "RUNNING"  # calls in flight still come back

    await harness.record(*[ok(c) for c in in_flight])
    run = await harness.run()
    assert run.status == "CANCELLED" and run.status_reason == "user"
    assert (await harness.steps())["fan"] == "CANCELLED"
    reasons = await rows(
        harness,
        "SELECT DISTINCT status_reason FROM step_runs WHERE run_id = :r AND map_index >= 0 "
        "AND status = 'CANCELLED'",
    )
    assert [row.status_reason for row in reasons] == ["user"]
    events = await rows(
        harness,
        "SELECT payload->>'map_index' AS item, count(*) AS n FROM event_outbox "
        "WHERE run_id = :r AND event_type = 'ingestion.step.cancelled' GROUP BY 1",
    )
    per_item = {row.item: row.n for row in events}
    assert per_item.pop(None) == 1  # the map_over step itself
    cancelled = await rows(
        harness,
        "SELECT map_index FROM step_runs WHERE run_id = :r AND map_index >= 0 "
        "AND status = 'CANCELLED'",
    )
    assert per_item == {str(row.map_index): 1 for row in cancelled}
    ended = await rows(
        harness,
        "SELECT count(*) AS n FROM event_outbox WHERE run_id = :r "
        "AND event_type = 'ingestion.workflow.cancelled'",
    )
    assert ended[0].n == 1


async def test_a_run_with_nothing_in_flight_ends_in_the_last_round(harness: Harness) -> None:
    window = await fan_out(harness, 900, map_concurrency=10)
    await harness.record(*[ok(c) for c in window])
    assert await cancel(harness) == "RUNNING"
    assert await stop_until_done(harness) >= 2
    assert (await harness.run()).status == "CANCELLED"
    assert await children(harness) == {"SUCCEEDED": 10, "CANCELLED": 890}


async def test_repeated_cancel_is_accepted_and_a_terminal_run_refuses(harness: Harness) -> None:
    await harness.start({"name": "again", "steps": [s("a"), s("b", "a")]})
    [a] = await harness.claim()
    assert await cancel(harness) == "RUNNING"
    assert await cancel(harness, reason="user, again") == "RUNNING"
    assert await harness.claim() == []
    await stop_until_done(harness)
    await harness.record(ok(a))
    run = await harness.run()
    assert run.status == "CANCELLED" and run.status_reason == "user, again"
    assert (await harness.steps())["b"] == "CANCELLED"
    with pytest.raises(Conflict):
        await cancel(harness)


async def test_cancelled_run_still_runs_its_compensations(harness: Harness) -> None:
    await harness.start(
        {"name": "undo", "steps": [s("a", compensate={"action": "noop"}), s("b", "a"), s("c")]}
    )
    claimed = {c.step_id: c for c in await harness.claim()}
    await harness.record(ok(claimed["a"]))  # b becomes READY; c is in flight
    assert await cancel(harness) == "RUNNING"
    assert await harness.claim() == []
    await stop_until_done(harness)
    await harness.record(ok(claimed["c"]))
    assert (await harness.run()).status == "COMPENSATING"
    [undo] = await harness.claim()
    assert (undo.step_id, undo.role) == ("a", "compensation")
    await harness.record(ok(undo))
    assert (await harness.run()).status == "COMPENSATED"
    assert (await harness.steps())["b"] == "CANCELLED"


async def test_steps_of_a_run_past_its_deadline_are_not_claimed_and_are_cancelled(
    harness: Harness,
) -> None:
    await harness.start({"name": "late", "timeout_s": 3600, "steps": [s("a"), s("b")]})
    # The deadline is moved into the past rather than waited for.
    async with harness.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE workflow_runs SET deadline_at = now() - interval '1 second' WHERE id = :r"
            ),
            {"r": harness.run_id},
        )
    assert await harness.claim() == []
    await stop_until_done(harness)
    run = await harness.run()
    assert run.status == "FAILED" and run.error == "run exceeded its timeout_s"
    assert await harness.steps() == {"a": "CANCELLED", "b": "CANCELLED"}


@pytest.fixture
def own_schema() -> Iterator[str]:
    """A schema of this test's own: the engine it starts sees no other test's runs."""
    yield from fresh_schema()


async def test_a_running_engine_finishes_the_cancel_on_its_own(own_schema: str) -> None:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=own_schema))
    harness = Harness(create_sessionmaker(engine), own_schema)
    window = await fan_out(harness, 1500, map_concurrency=10)
    await harness.record(*[ok(c) for c in window])  # nothing in flight: the engine alone ends it
    # A long safety poll: the engine starts on the cancel's wake-up (or its start-up pass).
    settings = EngineSettings(
        database_url=DATABASE_URL, db_schema=own_schema, worker_id="stopper", poll_interval_s=60
    )
    executor = Executor(settings, harness.sessionmaker, AgentClient({}, "unused"), create_metrics())
    executor.start()
    try:
        assert await cancel(harness) == "RUNNING"

        async def cancelled() -> bool:
            return str((await harness.run()).status) == "CANCELLED"

        await eventually(cancelled)
    finally:
        await executor.stop()
        await engine.dispose()
    assert await children(harness) == {"SUCCEEDED": 10, "CANCELLED": 1490}
