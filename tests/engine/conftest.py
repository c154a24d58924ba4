"""The engine's tests: runs submitted through the controller's API, engines (`Executor`, or the
whole engine app) on the module's own schema, calling a real agent over HTTP whose one action
can be held open until the test lets it answer."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.app import create_agent_app
from agents.base.context import ActionContext
from agents.base.settings import AgentSettings
from services.workflow_engine.settings import EngineSettings
from services.workflow_engine.worker import Executor
from shared.agent_client import AgentClient
from shared.db.session import create_engine, create_sessionmaker
from shared.metrics import create_metrics
from shared.settings import CommonSettings
from tests.conftest import SERVICE_TOKEN
from tests.polling import eventually
from tests.schedules.helpers import AUTH, controller
from tests.serving import serve

AGENT = "data-fetch-retry"  # a catalog agent whose `fetch` this module's agent serves
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED", "COMPENSATED", "COMPENSATION_FAILED")


class GateBody(ActionBody):
    """`hold`: answer only once the test opens the gate; `fail_first`: the first call of a step
    fails retryably."""

    hold: bool = False
    fail_first: bool = False


@dataclass
class GateAgent:
    """A real agent app (agents/base) served by uvicorn; `calls` lists the step of each call."""

    url: str = ""
    calls: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    inside: int = 0  # calls not answered yet

    def called(self, step_id: str) -> int:
        return self.calls.count(step_id)


def _gate_app(agent: GateAgent, settings: AgentSettings) -> Any:
    registry = ActionRegistry(AGENT)

    # read_only: the agent's ledger would answer a second engine's call of a step with a
    # conflict; these tests are about the engine, which must not call twice on its own.
    @registry.action("fetch", GateBody, example={}, read_only=True)
    async def fetch(body: GateBody, ctx: ActionContext) -> dict[str, Any]:
        step = ctx.step_id or "?"
        agent.calls.append(step)
        if body.fail_first and agent.called(step) == 1:
            raise AgentError("first call fails", code="flaky", retryable=True)
        agent.inside += 1
        try:
            if body.hold:  # the gate is a threading.Event: the test runs in another loop
                await asyncio.to_thread(agent.opened.wait)
        finally:
            agent.inside -= 1
        return {"step": step, "call": agent.called(step)}

    return create_agent_app(registry, settings)


@pytest.fixture(scope="module")
def gate_agent(module_env: dict) -> Iterator[GateAgent]:
    agent = GateAgent()
    with serve(_gate_app(agent, AgentSettings(**module_env)), lifespan="on") as url:
        agent.url = url
        yield agent
        agent.opened.set()  # let held calls end before the server stops


@pytest.fixture
async def gate(gate_agent: GateAgent) -> AsyncIterator[GateAgent]:
    """The agent with its gate closed and no calls yet; calls it still holds at the end of the
    test (whose engine gave up on them) are let go before the next test."""
    gate_agent.opened.clear()
    gate_agent.calls.clear()
    yield gate_agent
    gate_agent.opened.set()
    await eventually(lambda: gate_agent.inside == 0)


@pytest.fixture
async def db(module_env: dict) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(**module_env))
    yield create_sessionmaker(engine)
    await engine.dispose()


def engine_settings(env: dict, agent: GateAgent, worker: str, **overrides: Any) -> EngineSettings:
    """Settings of an engine replica named `worker`, quick to notice things."""
    values: dict[str, Any] = {
        **env,
        "worker_id": worker,
        "agent_urls": {AGENT: agent.url},
        "poll_interval_s": 0.2,
        "lease_seconds": 5.0,
        "shutdown_grace_s": 5.0,
        **overrides,
    }
    return EngineSettings(**values)


@asynccontextmanager
async def running_engine(settings: EngineSettings) -> AsyncIterator[Executor]:
    """An `Executor` with its loops running, stopped (as at SIGTERM) on the way out."""
    engine = create_engine(settings)
    client = AgentClient(settings.agent_urls, SERVICE_TOKEN)
    executor = Executor(settings, create_sessionmaker(engine), client, create_metrics())
    executor.start()
    try:
        yield executor
    finally:
        await executor.stop()
        await client.aclose()
        await engine.dispose()


def step(step_id: str, *after: str, **params: Any) -> dict[str, Any]:
    return {"id": step_id, "agent": AGENT, "action": "fetch", "params": params,
            "depends_on": list(after)}  # fmt: skip


@dataclass
class Runs:
    """Runs submitted through the controller's API, read back from the database."""

    api: httpx.AsyncClient
    db: async_sessionmaker

    async def submit(self, *steps: dict[str, Any], **spec: Any) -> uuid.UUID:
        body = {"spec": {"name": "engine-test", "steps": list(steps), **spec}, "inputs": {}}
        response = await self.api.post("/coordinate", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        return uuid.UUID(response.json()["run_id"])

    async def cancel(self, run_id: uuid.UUID) -> None:
        response = await self.api.post(f"/workflows/{run_id}/cancel", headers=AUTH)
        assert response.status_code in (200, 202), response.text

    async def status(self, run_id: uuid.UUID) -> str:
        async with self.db() as session:
            query = text("SELECT status FROM workflow_runs WHERE id = :r")
            return str((await session.execute(query, {"r": run_id})).scalar_one())

    async def steps(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Each step row of the run by step id (status, lease_owner, attempts, attempt_log...)."""
        async with self.db() as session:
            rows = await session.execute(
                text("SELECT * FROM step_runs WHERE run_id = :r AND role = 'action'"),
                {"r": run_id},
            )
            return {row.step_id: row for row in rows}

    async def events(self, run_id: uuid.UUID) -> list[tuple[str, str | None]]:
        """The run's outbox events in order: (event type, step id)."""
        async with self.db() as session:
            rows = await session.execute(
                text(
                    "SELECT event_type, payload->>'step_id' AS step_id FROM event_outbox "
                    "WHERE run_id = :r ORDER BY id"
                ),
                {"r": run_id},
            )
            return [(row.event_type, row.step_id) for row in rows]

    async def ended(self, run_id: uuid.UUID, within_s: float = 30.0) -> str:
        """The run's final status, once it has one."""

        async def done() -> bool:
            return await self.status(run_id) in ENDED

        await eventually(done, within_s)
        return await self.status(run_id)

    async def step_is(
        self, run_id: uuid.UUID, step_id: str, status: str, within_s: float = 30.0
    ) -> Any:
        """The step's row once it has `status`."""

        async def reached() -> bool:
            row = (await self.steps(run_id)).get(step_id)
            return row is not None and row.status == status

        await eventually(reached, within_s)
        return (await self.steps(run_id))[step_id]


@pytest.fixture
async def runs(module_env: dict, db: async_sessionmaker) -> AsyncIterator[Runs]:
    """The controller API (no loops of its own, no engine of its own) on the module's schema."""
    async with controller(module_env) as (_app, api):
        yield Runs(api, db)


async def wait_for_call(agent: GateAgent, step_id: str, within_s: float = 30.0) -> None:
    """Return once the agent has been called for `step_id`."""
    await eventually(lambda: agent.called(step_id) > 0, within_s)


@pytest.fixture(autouse=True)
async def _nothing_left_running(db: async_sessionmaker) -> AsyncIterator[None]:
    """Each test leaves no step claimed or ready behind (the next would pick it up)."""
    yield
    async with db() as session:
        left = await session.execute(
            text("SELECT count(*) FROM step_runs WHERE status IN ('READY', 'RUNNING')")
        )
        assert left.scalar_one() == 0, "a test left steps ready or running"
