"""Focused fault tests for what the harness found: each pins one recovery behaviour with a real
PostgreSQL (reached through a TCP relay that can cut it off) and real agent and engine code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.app import create_agent_app
from agents.base.context import ActionContext
from agents.base.ledger import Claim, Ledger
from agents.base.liveness import Heartbeat
from agents.base.settings import AgentSettings
from services.workflow_engine.settings import EngineSettings
from services.workflow_engine.worker import Executor
from shared.agent_client import AgentClient
from shared.db.session import asyncpg_dsn, create_engine, create_sessionmaker
from shared.errors import Conflict
from shared.metrics import create_metrics
from shared.settings import CommonSettings
from shared.spec.models import WorkflowSpec
from shared.state.runs import NewRun, create_runs, start_runs, startable_runs
from shared.state.steps import AttemptResult, claim_steps, record_results
from tests.conftest import DATABASE_URL, asgi_client, fresh_schema, service_auth
from tests.e2e.faults import TcpProxy
from tests.polling import eventually


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    """A TCP relay to the test PostgreSQL: cutting it is the database going away."""
    port = make_url(DATABASE_URL).port or 5432
    proxy = TcpProxy(port).start()
    yield proxy
    proxy.stop()


def _via(proxy: TcpProxy) -> str:
    return make_url(DATABASE_URL).set(port=proxy.port).render_as_string(hide_password=False)


async def _effect(schema: str, key: str) -> asyncpg.Record:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL), server_settings={"search_path": schema})
    try:
        row = await conn.fetchrow(
            "SELECT status, executions, claimed_until FROM agent_effects "
            "WHERE idempotency_key = $1",
            key,
        )
        assert row is not None
        return row
    finally:
        await conn.close()


class _Empty(ActionBody):
    """No fields."""


async def test_an_effect_finished_while_the_database_is_away_is_recorded_once(
    db_schema: str, db_proxy: TcpProxy
) -> None:
    """The agent's ledger waits out a database outage instead of leaving the key in progress
    (which blocked every retry of the step until the claim lapsed, minutes later)."""
    entered, release = asyncio.Event(), asyncio.Event()
    registry = ActionRegistry("data-fetch-retry")

    @registry.action("fetch", _Empty, example={})
    async def fetch(body: _Empty, ctx: ActionContext) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {"fetched": True}

    settings = AgentSettings(
        database_url=_via(db_proxy), db_schema=db_schema, service_token="test-service-token"
    )
    key = f"{uuid.uuid4()}:fetch"
    headers = {**service_auth(), "Idempotency-Key": key}
    async with asgi_client(create_agent_app(registry, settings)) as client:
        call = asyncio.create_task(client.post("/api/v1/fetch", json={}, headers=headers))
        await asyncio.wait_for(entered.wait(), 30)
        db_proxy.cut()  # the database goes away while the effect is under way
        release.set()
        # The agent keeps trying to record the outcome (each try a refused connection) and
        # has not answered meanwhile.
        await eventually(lambda: db_proxy.refused >= 3, within_s=30)
        assert not call.done()
        db_proxy.restore()
        response = await asyncio.wait_for(call, 60)
        assert response.status_code == 200, response.text
        assert response.json() == {"fetched": True}
        again = await client.post("/api/v1/fetch", json={}, headers=headers)
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json() == {"fetched": True}
    row = await _effect(db_schema, key)
    assert (row["status"], row["executions"]) == ("DONE", 1)


@pytest.fixture
async def ledger(common_env: dict) -> AsyncIterator[Ledger]:
    """A ledger on the test schema with a claim long enough for a test."""
    engine = create_engine(CommonSettings(**common_env))
    yield Ledger("data-merger", create_sessionmaker(engine), claim_s=60)
    await engine.dispose()


async def test_finishing_a_claim_again_counts_its_effect_once(
    ledger: Ledger, db_schema: str
) -> None:
    """A retried finish whose first commit landed (its answer lost) must not count twice."""
    key = f"{uuid.uuid4()}:merge"
    claim = await ledger.begin(key, "merge", "h")
    assert isinstance(claim, Claim)
    await ledger.finish(claim, {"rows": 5})
    await ledger.finish(claim, {"rows": 5})
    row = await _effect(db_schema, key)
    assert (row["status"], row["executions"], row["claimed_until"]) == ("DONE", 1, None)


async def test_an_effect_run_twice_after_a_lapsed_claim_is_counted_twice(
    ledger: Ledger, db_schema: str
) -> None:
    """The counter is the agents' honest record: a takeover after a lapsed claim shows as 2."""
    key = f"{uuid.uuid4()}:merge"
    ledger.claim_s = 0.05
    first = await ledger.begin(key, "merge", "h")
    await asyncio.sleep(0.2)  # the first worker looks dead: its claim lapses
    second = await ledger.begin(key, "merge", "h")
    assert isinstance(first, Claim) and isinstance(second, Claim)
    assert first.until != second.until
    await ledger.finish(second, {"rows": 5})
    await ledger.finish(first, {"rows": 5})  # the "dead" worker finishes after all
    row = await _effect(db_schema, key)
    assert (row["status"], row["executions"]) == ("DONE", 2)


async def test_a_failure_recorded_twice_leaves_a_taken_over_key_alone(
    ledger: Ledger, db_schema: str
) -> None:
    """`fail` only touches the key while its own claim holds it."""
    key = f"{uuid.uuid4()}:merge"
    ledger.claim_s = 0.05
    first = await ledger.begin(key, "merge", "h")
    await asyncio.sleep(0.2)
    second = await ledger.begin(key, "merge", "h")
    assert isinstance(first, Claim) and isinstance(second, Claim)
    await ledger.fail(first, {"error": "late", "retryable": True})
    row = await _effect(db_schema, key)
    assert row["status"] == "IN_PROGRESS"  # still the second worker's
    await ledger.finish(second, {"rows": 1})
    assert (await _effect(db_schema, key))["executions"] == 1


async def test_a_claim_whose_process_stopped_beating_is_taken_over_at_once(
    common_env: dict, db_schema: str
) -> None:
    """A merger SIGKILLed mid-action leaves its claim IN_PROGRESS for `claim_s` (minutes):
    the retry must not wait that long when the holder's heartbeat has stopped."""
    engine = create_engine(CommonSettings(**common_env))
    sessions = create_sessionmaker(engine)
    try:
        alive = Heartbeat("data-merger", sessions, interval_s=0.1)
        silent = Heartbeat("data-merger", sessions, interval_s=0.1)
        await alive.start()
        await silent.start()

        def ledger_of(beat: Heartbeat) -> Ledger:
            return Ledger(
                "data-merger", sessions, 600, instance_id=beat.instance_id, dead_after_s=0.5
            )

        live_key, dead_key = f"{uuid.uuid4()}:merge", f"{uuid.uuid4()}:merge"
        assert isinstance(await ledger_of(alive).begin(live_key, "merge", "h"), Claim)
        first = await ledger_of(silent).begin(dead_key, "merge", "h")
        assert isinstance(first, Claim)
        assert silent._task is not None
        silent._task.cancel()  # the process is killed: no more beats, no stop()
        await asyncio.sleep(1.0)

        other = Heartbeat("data-merger", sessions, interval_s=0.1)
        await other.start()
        retrying = ledger_of(other)
        with pytest.raises(Conflict):  # the live holder keeps its claim
            await retrying.begin(live_key, "merge", "h")
        second = await retrying.begin(dead_key, "merge", "h")  # the silent one's is taken over
        assert isinstance(second, Claim)
        await retrying.finish(second, {"rows": 5})
        # Had the silent process lived on and finished, the record shows the effect twice.
        await ledger_of(silent).finish(first, {"rows": 5})
        assert (await _effect(db_schema, dead_key))["executions"] == 2
        for beat in (alive, other):
            await beat.stop()
    finally:
        await engine.dispose()


@pytest.fixture
def own_schema() -> Iterator[str]:
    """A schema of this test's own: the gauge counts everything in it."""
    yield from fresh_schema()


def _spec(*steps: dict[str, Any], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "u", "steps": list(steps), **extra})


def _noop(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "agent": "data-connector", "action": "noop", **extra}


async def test_queue_size_counts_every_kind_of_ready_unclaimed_work(own_schema: str) -> None:
    """workflow_queue_size: READY steps, retries that are due, and admitted runs not started
    (not in-flight steps, nor retries still waiting for their time)."""
    settings = EngineSettings(
        database_url=DATABASE_URL, db_schema=own_schema, start_loops=False, worker_id="w"
    )
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    metrics = create_metrics()
    executor = Executor(settings, sessionmaker, AgentClient({}, "t"), metrics)
    try:
        async with sessionmaker() as session, session.begin():
            await create_runs(
                session, [NewRun(spec=_spec(_noop("a")), inputs={})], schema=own_schema
            )
            [started] = await create_runs(
                session,
                [NewRun(spec=_spec(_noop("a"), _noop("b"), _noop("c"), _noop("d")), inputs={})],
                schema=own_schema,
            )
        async with sessionmaker() as session, session.begin():
            await start_runs(session, [started.id], schema=own_schema)
        async with sessionmaker() as session, session.begin():
            claimed = await claim_steps(session, owner="w", limit=3, lease_s=60, schema=own_schema)
        due, later, _running = claimed  # the fourth step stays READY
        error = {"code": "boom", "message": "", "retryable": True}
        async with sessionmaker() as session, session.begin():
            await record_results(
                session,
                [
                    AttemptResult(due, "failed", error=error, retry_in_s=0.0, worker="w"),
                    AttemptResult(later, "failed", error=error, retry_in_s=3600, worker="w"),
                ],
                schema=own_schema,
            )
        await executor.refresh_gauges()
        # 1 admitted run not started + 1 READY step + 1 retry due = 3
        assert metrics.workflow_queue_size._value.get() == 3
        assert metrics.active_workflows._value.get() == 2
    finally:
        await engine.dispose()


async def test_recording_a_child_of_a_big_fanout_reads_each_child_a_few_times_only(
    own_schema: str,
) -> None:
    """Advancing a 1,000-element fan-out after one child finished touches O(children) rows,
    not O(children²) (which made each child cost ~0.4 s at this size)."""
    settings = CommonSettings(database_url=DATABASE_URL, db_schema=own_schema)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    items = 1000
    spec = _spec(_noop("fan", map_over="${run.id}", map_concurrency=10))
    try:
        async with sessionmaker() as session, session.begin():
            [run] = await create_runs(session, [NewRun(spec=spec, inputs={})], schema=own_schema)
        async with sessionmaker() as session, session.begin():
            await start_runs(session, [run.id], schema=own_schema)
        async with sessionmaker() as session, session.begin():
            [parent] = await claim_steps(session, owner="w", limit=1, lease_s=60, schema=own_schema)
        expand = AttemptResult(
            parent, "succeeded", worker="w", map_items=list(range(items)), fanout_limit=10
        )
        async with sessionmaker() as session, session.begin():
            await record_results(session, [expand], schema=own_schema)
        async with sessionmaker() as session, session.begin():
            [child] = await claim_steps(session, owner="w", limit=1, lease_s=60, schema=own_schema)
        async with sessionmaker() as session, session.begin():
            done = AttemptResult(child, "succeeded", output={"i": 0}, worker="w")
            await record_results(session, [done], schema=own_schema)
            # This transaction's own statistics: rows read from step_runs by the statements.
            read = (
                await session.execute(
                    text(
                        "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM "
                        "pg_stat_xact_user_tables WHERE schemaname = :s AND relname = 'step_runs'"
                    ),
                    {"s": own_schema},
                )
            ).scalar_one()
        assert read < 20 * items, read
        async with sessionmaker() as session:
            ready = (
                await session.execute(
                    text(
                        "SELECT count(*) FROM step_runs WHERE map_index >= 0 "
                        "AND status IN ('READY', 'RUNNING')"
                    )
                )
            ).scalar_one()
        assert ready == 10  # the window refilled: still exactly map_concurrency at once
    finally:
        await engine.dispose()


@pytest.fixture
async def refused_url() -> AsyncIterator[str]:
    """A URL of the test server whose every connection is refused with SQLSTATE 53300 (a role
    with CONNECTION LIMIT 0): the server's answer when it is out of connections."""
    role = f"chaos_full_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
        yield make_url(DATABASE_URL).set(username=role).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_an_action_refused_because_the_database_is_full_may_be_retried(
    db_schema: str, refused_url: str
) -> None:
    """An action that reports a database outage as final (as data-merger's `load_failed` does
    for SQLSTATE 53300 or 57P0x) is answered retryable: the request was not at fault."""
    registry = ActionRegistry("data-merger")

    @registry.action("merge", _Empty, example={})
    async def merge(body: _Empty, ctx: ActionContext) -> dict[str, Any]:
        target = create_async_engine(refused_url)
        try:
            async with target.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise AgentError(f"the load was refused: {exc.orig}", code="load_failed") from exc
        finally:
            await target.dispose()
        return {}

    # The app refuses to start unless it serves the catalog's actions: the rest do nothing.
    async def nothing(body: _Empty, ctx: ActionContext) -> dict[str, Any]:
        return {}

    for other in ("quality_check", "maintain", "snapshot"):
        registry.action(other, _Empty, example={})(nothing)

    settings = AgentSettings(
        database_url=DATABASE_URL, db_schema=db_schema, service_token="test-service-token"
    )
    key = f"{uuid.uuid4()}:merge"
    headers = {**service_auth(), "Idempotency-Key": key}
    async with asgi_client(create_agent_app(registry, settings)) as client:
        response = await client.post("/api/v1/merge", json={}, headers=headers)
        assert response.status_code == 503, response.text
        assert response.json()["retryable"] is True
        assert response.json()["error"] == "load_failed"
    assert (await _effect(db_schema, key))["status"] == "FAILED"  # retryable: a retry redoes it


async def test_higher_priority_runs_start_and_are_claimed_first(own_schema: str) -> None:
    """Runs carry a priority: the starter takes the highest first, and so does every claim."""
    settings = CommonSettings(database_url=DATABASE_URL, db_schema=own_schema)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session, session.begin():
            runs = {
                priority: (
                    await create_runs(
                        session,
                        [NewRun(spec=_spec(_noop("a")), inputs={}, priority=priority)],
                        schema=own_schema,
                    )
                )[0]
                for priority in (0, 7, -3)
            }
        async with sessionmaker() as session, session.begin():
            assert await startable_runs(session, limit=1) == [runs[7].id]
            await start_runs(session, [r.id for r in runs.values()], schema=own_schema)
        order = []
        for _ in runs:
            async with sessionmaker() as session, session.begin():
                [step] = await claim_steps(
                    session, owner="w", limit=1, lease_s=60, schema=own_schema
                )
            order.append(step.run_id)
        assert order == [runs[7].id, runs[0].id, runs[-3].id]
    finally:
        await engine.dispose()
