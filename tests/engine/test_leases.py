"""Leases, through the engine's own loops: a replica that keeps its lease keeps its step; one
that loses the database (and so stops renewing) has its step taken over by another, and its
late result is not recorded over the new owner's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import DATABASE_URL
from tests.e2e.faults import TcpProxy
from tests.engine.conftest import (
    GateAgent,
    Runs,
    engine_settings,
    running_engine,
    step,
    wait_for_call,
)
from tests.polling import eventually


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    """A TCP relay to the test PostgreSQL: cutting it is the database going away for one
    replica only."""
    proxy = TcpProxy(make_url(DATABASE_URL).port or 5432).start()
    yield proxy
    proxy.stop()


def _through(proxy: TcpProxy) -> str:
    return make_url(DATABASE_URL).set(port=proxy.port).render_as_string(hide_password=False)


async def test_a_step_whose_lease_is_renewed_is_not_taken_over(
    module_env: dict, gate: GateAgent, runs: Runs
) -> None:
    run_id = await runs.submit(step("slow", hold=True))
    holder = engine_settings(module_env, gate, "engine-a", lease_seconds=0.6)
    other = engine_settings(module_env, gate, "engine-b", lease_seconds=0.6, sticky_seconds=0)
    async with running_engine(holder):
        await wait_for_call(gate, "slow")
        first = (await runs.step_is(run_id, "slow", "RUNNING")).lease_expires_at
        async with running_engine(other):
            # Four lease lengths go by with the other replica expiring leases and claiming
            # (its upkeep runs every 0.2 s); the holder renews, so the step stays its own.
            async def renewed_for_four_leases() -> bool:
                row = (await runs.steps(run_id))["slow"]
                return bool((row.lease_expires_at - first).total_seconds() >= 4 * 0.6)

            await eventually(renewed_for_four_leases, within_s=10)
            gate.opened.set()
            assert await runs.ended(run_id) == "SUCCEEDED"
    row = (await runs.steps(run_id))["slow"]
    assert (row.attempts, gate.called("slow")) == (1, 1)
    assert [a["worker"] for a in row.attempt_log] == ["engine-a"]


async def test_a_step_whose_lease_expires_is_taken_by_another_replica(
    module_env: dict, gate: GateAgent, runs: Runs, db_proxy: TcpProxy
) -> None:
    run_id = await runs.submit(step("slow", hold=True))
    cut_off = engine_settings(
        {**module_env, "database_url": _through(db_proxy)}, gate, "engine-a", lease_seconds=1
    )
    taker = engine_settings(module_env, gate, "engine-b", sticky_seconds=3600)
    async with running_engine(cut_off):
        await wait_for_call(gate, "slow")
        assert (await runs.step_is(run_id, "slow", "RUNNING")).lease_owner == "engine-a"
        db_proxy.cut()  # engine-a can no longer renew its lease, nor record anything
        async with running_engine(taker):
            # engine-b's upkeep returns the expired lease, and it claims the step at once (a
            # lost owner's affinity holds nothing back), calling the agent a second time.
            await eventually(lambda: gate.called("slow") == 2, within_s=20)
            row = await runs.step_is(run_id, "slow", "RUNNING")
            assert row.lease_owner == "engine-b"
            gate.opened.set()  # both calls answer; engine-b's result is recorded
            assert await runs.ended(run_id) == "SUCCEEDED"
        db_proxy.restore()
        # Leaving the block stops engine-a, whose record loop first gets its result to the
        # database: refused there, as the step is no longer its own.
    row = (await runs.steps(run_id))["slow"]
    assert row.status == "SUCCEEDED"
    # The lost attempt is not counted against the step's retries.
    assert [(a["worker"], a["outcome"], a["attempt"]) for a in row.attempt_log] == [
        ("engine-a", "lease_expired", 1),
        ("engine-b", "succeeded", 1),
    ]
    step_events = [e for e, step_id in await runs.events(run_id) if step_id == "slow"]
    claimed = step_events.index("ingestion.step.started")
    assert step_events[claimed:] == [
        "ingestion.step.started",
        "ingestion.step.ready",  # the expired lease
        "ingestion.step.started",
        "ingestion.step.succeeded",
    ]
