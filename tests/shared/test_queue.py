"""shared/db/queue.py: the one count behind `workflow_queue_size`, on a schema of this module's
own with rows of every kind that counts (and of kinds that do not)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.models import StepRun, WorkflowRun
from shared.db.queue import QueueSizes, queue_sizes
from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings


@pytest.fixture
async def db(module_env: dict) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(**module_env))
    yield create_sessionmaker(engine)
    await engine.dispose()


def _run(status: str, *, admitted: bool) -> WorkflowRun:
    now = datetime.now(UTC)
    return WorkflowRun(
        id=uuid.uuid4(),
        workflow_name="q",
        workflow_version=1,
        kind="standard",
        spec={},
        inputs={},
        status=status,
        trace_id=uuid.uuid4().hex,
        admitted_at=now if admitted else None,
    )


def _step(run: WorkflowRun, step_id: str, status: str, due_in_s: float | None = None) -> StepRun:
    due = None if due_in_s is None else datetime.now(UTC) + timedelta(seconds=due_in_s)
    return StepRun(
        run_id=run.id, step_id=step_id, agent="a", action="noop", status=status, next_attempt_at=due
    )


async def test_the_queue_counts_ready_work_and_the_runs_waiting_to_start(
    db: async_sessionmaker,
) -> None:
    async with db() as session, session.begin():
        assert await queue_sizes(session) == QueueSizes(steps=0, admitted=0, waiting=0)
    running = _run("RUNNING", admitted=True)
    async with db() as session, session.begin():
        session.add_all([running, _run("PENDING", admitted=True), _run("PENDING", admitted=False)])
        session.add(_run("SUCCEEDED", admitted=True))
        await session.flush()
        session.add_all(
            [
                _step(running, "ready", "READY"),
                _step(running, "due", "RETRY_WAIT", due_in_s=-1),
                _step(running, "later", "RETRY_WAIT", due_in_s=3600),  # not yet
                _step(running, "claimed", "RUNNING"),
                _step(running, "waiting", "PENDING"),
            ]
        )
    async with db() as session:
        sizes = await queue_sizes(session)
    assert sizes == QueueSizes(steps=2, admitted=1, waiting=1)
    assert (sizes.backlog, sizes.queued) == (3, 4)
