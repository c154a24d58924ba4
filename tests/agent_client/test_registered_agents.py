"""The engine's AgentClient calling a registered agent: its URL found in `registered_agents`
(at the first call, without a restart), its own timeout and concurrency kept, the protocol the
built-ins get (Idempotency-Key, X-Run-Id). The agent is tests/external_agent.py over real HTTP,
the registrations in a real PostgreSQL schema."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.agents import service
from services.orchestrator_controller.agents.schemas import AgentIn
from shared.agent_client import AgentCallError, AgentClient
from shared.agent_registry import AgentDirectory
from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, SERVICE_TOKEN, fresh_schema
from tests.external_agent import create_app as external_agent
from tests.polling import eventually
from tests.serving import serve

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = external_agent(str(tmp_path_factory.mktemp("agent") / "ledger.sqlite"), SERVICE_TOKEN)
    with serve(app) as url:
        yield url


@pytest.fixture
def schema() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture
async def db(schema: str) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def effects(agent_url: str) -> dict:
    async with httpx.AsyncClient() as http:
        answer: dict = (await http.get(f"{agent_url}/effects")).json()
        return answer


async def register(db: async_sessionmaker, url: str, **limits: float) -> None:
    async with db() as session, session.begin():
        await service.store(
            session,
            AgentIn(name="data-quality", base_url=url, **limits),
            base_url=url,
            actions=["score", "sleep"],
            source="api",
        )


async def test_a_registered_agent_is_found_at_its_first_call_and_called_by_protocol(
    db: async_sessionmaker, agent_url: str
) -> None:
    directory = AgentDirectory(db, refresh_s=3600, miss_interval_s=0)
    client = AgentClient({}, SERVICE_TOKEN, directory=directory)
    try:
        with pytest.raises(AgentCallError) as unknown:
            await client.call("data-quality", "score", {}, idempotency_key="k0", timeout_s=5)
        assert unknown.value.code == "unknown_agent" and not unknown.value.retryable

        await register(db, agent_url)  # after the directory's last read: found by the miss
        context = {"X-Run-Id": "run-1", "X-Step-Id": "check"}
        reply = await client.call(
            "data-quality", "score", {"rows": 4}, idempotency_key="k1", timeout_s=5, context=context
        )
        assert reply.output == {"score": 8} and not reply.replayed
        again = await client.call(
            "data-quality", "score", {"rows": 4}, idempotency_key="k1", timeout_s=5, context=context
        )
        assert again.output == {"score": 8} and again.replayed
        assert (await effects(agent_url))["effects"] == [
            {"key": "k1", "run_id": "run-1", "step_id": "check"}
        ]

        # A reply lost after the effect: retryable, as from a built-in agent.
        with pytest.raises(AgentCallError) as lost:
            await client.call(
                "data-quality", "score", {"lose_reply": True}, idempotency_key="k2", timeout_s=5
            )
        assert lost.value.status == 503 and lost.value.retryable
    finally:
        await client.aclose()


async def test_the_agents_timeout_and_concurrency_are_kept(
    db: async_sessionmaker, agent_url: str
) -> None:
    await register(db, agent_url, timeout_s=0.5, max_concurrency=1)
    client = AgentClient({}, SERVICE_TOKEN, directory=AgentDirectory(db))
    try:
        started = time.monotonic()
        with pytest.raises(AgentCallError) as slow:
            # The step would wait 30 s; the agent's owner said 0.5 s.
            await client.call(
                "data-quality", "sleep", {"seconds": 1.5}, idempotency_key="t", timeout_s=30
            )
        assert slow.value.code == "timeout" and time.monotonic() - started < 1.4

        async def abandoned_call_finished() -> bool:
            return (await effects(agent_url))["in_flight"] == 0

        await eventually(abandoned_call_finished)  # the cap below counts from an idle agent

        await asyncio.gather(
            *(
                client.call(
                    "data-quality", "sleep", {"seconds": 0.1}, idempotency_key=f"c{i}", timeout_s=5
                )
                for i in range(4)
            )
        )
        assert (await effects(agent_url))["most_in_flight"] == 1
    finally:
        await client.aclose()


async def test_an_agent_registered_just_after_a_read_is_found_at_its_first_call(
    db: async_sessionmaker, agent_url: str
) -> None:
    directory = AgentDirectory(db, refresh_s=3600, miss_interval_s=3600)
    assert await directory.lookup("other-agent") is None  # the table read a moment ago
    await register(db, agent_url)
    found = await directory.lookup("data-quality")
    assert found is not None and found.base_url == agent_url
    # A name asked for again soon after a miss is not read again (no query per attempt).
    async with db() as session, session.begin():
        await service.store(
            session,
            AgentIn(name="other-agent", base_url=agent_url),
            base_url=agent_url,
            actions=["score"],
            source="api",
        )
    assert await directory.lookup("other-agent") is None
