"""Registered agents as the services read them: the engine resolves their URLs, the controller
checks specs against their actions and polls their health.

Built-in agents stay where they were (`AGENT_URLS`, `shared/spec/catalog.py`); a registered
agent can never take a built-in name, so the two sources never disagree about one agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import RegisteredAgent
from shared.settings import AGENT_NAMES
from shared.spec.catalog import AGENT_ACTIONS

log = logging.getLogger(__name__)

# One pattern for every agent name, built-in or registered: a DNS label (it is also the name of
# an Agent resource and of a Kubernetes Service) starting with a letter.
AGENT_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
# Names a registered agent may not take: the built-ins, and `health`, which is a route
# (/agents/health) rather than an agent.
RESERVED_NAMES = frozenset({*AGENT_NAMES, *AGENT_ACTIONS, "health"})


@dataclass(frozen=True)
class AgentEndpoint:
    """Where a registered agent answers and the limits its calls keep."""

    name: str
    base_url: str
    actions: frozenset[str]
    timeout_s: float
    max_concurrency: int


def builtin(name: str) -> bool:
    """Whether `name` is reserved for the platform (a built-in agent, or a route)."""
    return name in RESERVED_NAMES


async def registered_agents(session: AsyncSession) -> dict[str, AgentEndpoint]:
    """Every registered agent, by name."""
    rows = (await session.scalars(select(RegisteredAgent))).all()
    return {
        row.name: AgentEndpoint(
            name=row.name,
            base_url=row.base_url,
            actions=frozenset(row.actions),
            timeout_s=row.timeout_s,
            max_concurrency=row.max_concurrency,
        )
        for row in rows
    }


async def agent_catalog(
    session: AsyncSession, wanted: Iterable[str] = ()
) -> dict[str, frozenset[str]]:
    """The built-ins' actions plus the registered agents'. The database is read only when
    `wanted` (the agents a spec names) goes beyond the built-ins, so specs of built-in agents
    only (nearly every /coordinate) cost no query."""
    catalog = dict(AGENT_ACTIONS)
    if set(wanted) <= set(catalog):
        return catalog
    registered = await registered_agents(session)
    return {**{n: a.actions for n, a in registered.items()}, **catalog}


class AgentDirectory:
    """The registered agents as this process last read them, re-read every `refresh_s` and on
    a lookup of a name it does not know: at once for a name not looked up before (an agent
    registered a moment ago is found at its first call), then at most once per
    `miss_interval_s` for that name, so a spec naming an agent that is gone does not turn
    every attempt into a query."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        *,
        refresh_s: float = 10.0,
        miss_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._refresh_s = refresh_s
        self._miss_interval_s = miss_interval_s
        self._clock = clock
        self._agents: dict[str, AgentEndpoint] = {}
        self._read_at: float | None = None
        self._missed: dict[str, float] = {}  # name -> when a miss of it last re-read the table
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, AgentEndpoint]:
        """Read the registered agents now."""
        async with self._lock:
            async with self._sessionmaker() as session:
                self._agents = await registered_agents(session)
            self._read_at = self._clock()
            return self._agents

    def _age(self) -> float:
        return float("inf") if self._read_at is None else self._clock() - self._read_at

    async def agents(self) -> dict[str, AgentEndpoint]:
        """Every registered agent, re-read when the last read is older than `refresh_s`."""
        if self._age() >= self._refresh_s:
            await self.refresh()
        return self._agents

    async def lookup(self, name: str) -> AgentEndpoint | None:
        """The registered agent `name`, or None when the database does not have it either."""
        agents = await self.agents()
        if name in agents:
            self._missed.pop(name, None)
            return agents[name]
        last = self._missed.get(name)
        if last is None or self._clock() - last >= self._miss_interval_s:
            if len(self._missed) > 10_000:  # names of nothing, from old specs: forget them
                self._missed.clear()
            self._missed[name] = self._clock()
            agents = await self.refresh()
        return agents.get(name)
