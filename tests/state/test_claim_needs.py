"""A claim carries the outputs a step's templates reference and only those (step_runs.needs):
one referenced step, none, map items, compensations, and rows whose needs are unknown (created
before migration 0017) that still get every output of their run."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.migrate import alembic_config
from shared.db.session import asyncpg_dsn, create_engine, create_sessionmaker
from shared.settings import CommonSettings
from shared.spec.models import StepSpec
from shared.state.needs import step_needs
from shared.state.steps import AttemptResult, claim_steps, record_results
from tests.conftest import DATABASE_URL
from tests.state.test_state_machine import Harness, ok, s


@pytest.fixture
def harness(db: async_sessionmaker, schema: str) -> Harness:
    return Harness(db, schema)


def test_needs_are_the_steps_the_templates_reference() -> None:
    step = StepSpec.model_validate(
        {
            "id": "c",
            "agent": "data-connector",
            "action": "noop",
            "depends_on": ["a", "b"],
            "params": {"x": "${steps.b.output.rows}", "n": ["${inputs.n}", "${run.id}"]},
            "map_over": "${steps.a.output.files}",
            "compensate": {"action": "noop", "params": {"undo": "${steps.c.output.id}"}},
        }
    )
    assert step_needs(step) == ("a", "b")
    assert step_needs(step, "compensation") == ("c",)
    plain = StepSpec.model_validate({"id": "p", "agent": "a", "action": "noop"})
    assert step_needs(plain) == () and step_needs(plain, "compensation") == ()


def test_a_reference_that_cannot_be_read_statically_means_every_output() -> None:
    # Stored specs are validated, so this only reaches the engine through a bug or an older
    # template grammar: the row must then read everything rather than miss an output.
    broken = StepSpec.model_construct(
        id="b", agent="a", action="noop", params={"x": "${steps.a.output"}, map_over=None
    )
    assert step_needs(broken) is None


async def test_a_step_gets_exactly_the_outputs_it_references(harness: Harness) -> None:
    spec = {
        "name": "needs-one",
        "steps": [
            s("a"),
            s("b"),
            s("c", "a", "b", params={"rows": "${steps.b.output.rows}"}),
            s("d", "a", "b"),
        ],
    }
    await harness.start(spec)
    roots = {c.step_id: c for c in await harness.claim()}
    assert roots["a"].outputs == {} and roots["b"].outputs == {}
    await harness.record(ok(roots["a"], {"rows": 1}), ok(roots["b"], {"rows": 2}))
    joins = {c.step_id: c for c in await harness.claim()}
    assert joins["c"].outputs == {"b": {"rows": 2}}
    assert joins["d"].outputs == {}
    await harness.record(*(ok(c) for c in joins.values()))
    assert (await harness.run()).status == "SUCCEEDED"


async def test_map_items_get_what_their_list_and_params_reference(harness: Harness) -> None:
    spec = {
        "name": "needs-map",
        "steps": [
            s("src"),
            s("cfg"),
            s(
                "fan",
                "src",
                "cfg",
                map_over="${steps.src.output.files}",
                params={"f": "${item}", "mode": "${steps.cfg.output.mode}"},
            ),
        ],
    }
    await harness.start(spec)
    roots = {c.step_id: c for c in await harness.claim()}
    await harness.record(ok(roots["src"], {"files": ["x", "y"]}), ok(roots["cfg"], {"mode": "m"}))
    [parent] = await harness.claim()
    expected = {"src": {"files": ["x", "y"]}, "cfg": {"mode": "m"}}
    assert parent.outputs == expected
    await harness.record(
        AttemptResult(
            step=parent, outcome="succeeded", worker="w1", map_items=["x", "y"], fanout_limit=2
        )
    )
    items = await harness.claim()
    assert [c.map_index for c in sorted(items, key=lambda c: c.map_index)] == [0, 1]
    assert all(c.outputs == expected for c in items)
    await harness.record(*(ok(c) for c in items))
    assert (await harness.run()).status == "SUCCEEDED"


async def test_rows_without_needs_still_get_every_output(
    harness: Harness, db: async_sessionmaker
) -> None:
    """needs NULL (as on rows created before 0017) reads every finished output of the run."""
    await harness.start({"name": "needs-null", "steps": [s("a"), s("b"), s("c", "a", "b")]})
    roots = {c.step_id: c for c in await harness.claim()}
    await harness.record(ok(roots["a"], {"rows": 1}), ok(roots["b"], {"rows": 2}))
    async with db() as session, session.begin():
        await session.execute(
            text("UPDATE step_runs SET needs = NULL WHERE run_id = :r AND step_id = 'c'"),
            {"r": harness.run_id},
        )
    [c] = await harness.claim()
    assert c.outputs == {"a": {"rows": 1}, "b": {"rows": 2}}
    await harness.record(ok(c))


# A run in flight across the upgrade: its rows were created by the 0016 code, which knew no
# `needs`; the columns below are the ones that code inserted.
_OLD_SPEC = {
    "name": "old",
    "steps": [
        {"id": "a", "agent": "data-connector", "action": "noop"},
        {"id": "b", "agent": "data-connector", "action": "noop", "depends_on": ["a"]},
    ],
}


async def _seed_at_0016(schema: str, run_id: uuid.UUID) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            "INSERT INTO workflow_runs (id, workflow_name, workflow_version, kind, spec, inputs, "
            "status, trace_id, started_at) VALUES ($1, 'old', 1, 'standard', $2::jsonb, '{}', "
            "'RUNNING', 't', now())",
            run_id,
            json.dumps(_OLD_SPEC),
        )
        await conn.execute(
            "INSERT INTO step_runs (run_id, step_id, role, map_index, agent, action, depends_on, "
            "status, priority, attempts, max_attempts, ready_at, attempt_log, output, "
            "finished_at) VALUES "
            "($1, 'a', 'action', -1, 'data-connector', 'noop', '{}', 'SUCCEEDED', 0, 1, 3, "
            "now(), '[]', '{\"rows\": 5}', now()), "
            "($1, 'b', 'action', -1, 'data-connector', 'noop', '{a}', 'READY', 0, 0, 3, "
            "now(), '[]', NULL, NULL)",
            run_id,
        )
    finally:
        await conn.close()


async def test_a_run_started_before_0017_gets_every_output_after_the_upgrade() -> None:
    schema = f"m_{uuid.uuid4().hex[:10]}"
    settings = CommonSettings(database_url=DATABASE_URL, db_schema=schema)
    config = alembic_config(settings)
    run_id = uuid.uuid4()
    engine = create_engine(settings)
    try:
        await asyncio.to_thread(command.upgrade, config, "0016")
        await _seed_at_0016(schema, run_id)
        await asyncio.to_thread(command.upgrade, config, "head")
        db = create_sessionmaker(engine)
        async with db() as session, session.begin():
            [b] = await claim_steps(session, owner="w1", limit=10, lease_s=30, schema=schema)
        # b's params reference nothing, but its row does not say so: it reads every output
        assert b.step_id == "b" and b.outputs == {"a": {"rows": 5}}
        async with db() as session, session.begin():
            await record_results(session, [ok(b)], schema=schema)
        async with db() as session:
            status = await session.scalar(
                text("SELECT status FROM workflow_runs WHERE id = :r"), {"r": run_id}
            )
        assert status == "SUCCEEDED"
    finally:
        await engine.dispose()
        conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
