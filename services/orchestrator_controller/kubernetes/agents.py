"""Agent resources: each registers an agent of another team (source `kubernetes`).

The Agent kind of the shared informer (kubernetes/informer.py): at each change it reads the
actions of the agent a resource names from its `GET /api/v1/actions` (through the same checks
as `POST /agents`; again at each resync, which keeps them current), makes `registered_agents`
say what the namespace's Agent resources say (a resource takes a name over from an API
registration; a deleted resource takes its agent away) and writes each resource's status:
phase, the actions read, the health monitor's view and a Ready condition.

A resource naming a built-in agent without a `baseUrl` describes that agent (the chart's
records of its own agents): Ready, reason BuiltIn, nothing registered. With a `baseUrl` it is a
Conflict: a built-in agent's address comes from AGENT_URLS.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.agents.probe import ProbeFailed, normalize_url, read_actions
from services.orchestrator_controller.agents.schemas import (
    CREDENTIAL_PATTERN,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT_S,
)
from services.orchestrator_controller.kubernetes.informer import ResourceView
from services.orchestrator_controller.kubernetes.resources import (
    merge_conditions,
    oldest_per,
    ready_condition,
    status_differs,
)
from shared.agent_registry import AGENT_NAME_PATTERN, builtin, registered_agents
from shared.db.models import AgentHealth

log = logging.getLogger(__name__)

PLURAL = "agents"

_REGISTER = text(
    """
INSERT INTO registered_agents AS r (name, base_url, actions, timeout_s, max_concurrency,
    credentials, source, resource, updated_by)
VALUES (:name, :base_url, :actions, :timeout_s, :max_concurrency, :credentials, 'kubernetes',
    :resource, :resource)
ON CONFLICT (name) DO UPDATE SET
    base_url = EXCLUDED.base_url, actions = EXCLUDED.actions, timeout_s = EXCLUDED.timeout_s,
    max_concurrency = EXCLUDED.max_concurrency, credentials = EXCLUDED.credentials,
    source = 'kubernetes', resource = EXCLUDED.resource, updated_by = EXCLUDED.updated_by,
    updated_at = now()
WHERE (r.base_url, r.actions, r.timeout_s, r.max_concurrency, r.credentials, r.source,
       r.resource) IS DISTINCT FROM
      (EXCLUDED.base_url, EXCLUDED.actions, EXCLUDED.timeout_s, EXCLUDED.max_concurrency,
       EXCLUDED.credentials, 'kubernetes', EXCLUDED.resource)
"""
)
_RELEASE = text(
    "DELETE FROM registered_agents WHERE source = 'kubernetes' AND NOT (name = ANY(:kept))"
)


@dataclass(frozen=True)
class AgentResource:
    namespace: str
    name: str
    created: str
    agent: str
    base_url: str | None
    timeout_s: float
    max_concurrency: int
    credentials: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _number(spec: Mapping[str, Any], key: str, default: float, *, low: float, high: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"spec.{key}: {value!r} is not a number from {low:g} to {high:g}")
    return float(value)


def parse_agent_resource(resource: Mapping[str, Any]) -> AgentResource | str:
    """The registration an Agent resource asks for, or why it cannot be honoured."""
    metadata = resource.get("metadata") or {}
    spec = resource.get("spec") or {}
    agent, base_url = spec.get("agentName"), spec.get("baseUrl")
    if not isinstance(agent, str) or not re.match(AGENT_NAME_PATTERN, agent):
        return f"spec.agentName: {agent!r} is not an agent name (a DNS label)"
    credentials = spec.get("credentials") or []
    try:
        if base_url is not None:
            if not isinstance(base_url, str):
                raise ValueError(f"spec.baseUrl: {base_url!r} is not a URL")
            try:
                base_url = normalize_url(base_url)
            except ProbeFailed as exc:
                raise ValueError(f"spec.baseUrl: {exc.details[0]['message']}") from exc
        elif not builtin(agent):
            raise ValueError("spec.baseUrl: required for an agent that is not built in")
        timeout_s = _number(spec, "timeoutSeconds", DEFAULT_TIMEOUT_S, low=0.001, high=86400)
        concurrency = _number(spec, "maxConcurrency", DEFAULT_MAX_CONCURRENCY, low=1, high=10000)
        if not isinstance(credentials, list) or not all(
            isinstance(c, str) and re.match(CREDENTIAL_PATTERN, c) for c in credentials
        ):
            raise ValueError("spec.credentials: a list of environment variable names")
    except ValueError as exc:
        return str(exc)
    return AgentResource(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
        agent=agent,
        base_url=base_url,
        timeout_s=timeout_s,
        max_concurrency=int(concurrency),
        credentials=list(credentials),
    )


@dataclass
class _Outcome:
    phase: str
    ready: bool | None
    reason: str
    message: str
    actions: list[str] | None = None


class AgentResources:
    """The Agent kind: keeps `registered_agents` in step with the Agent resources of a namespace.

    Each change recomputes the whole (which resource registers which agent depends on the
    others) and writes the status of every resource whose status changed. The agent a resource
    names is asked for its actions again when that resource is reconciled (so at every resync)
    and when it comes to register its agent anew; the others reuse what was read.
    """

    plural = PLURAL
    kind = "Agent"

    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        http: httpx.AsyncClient,
        *,
        token: str,
        allow_private_hosts: list[str],
        probe_timeout_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http
        self._token = token
        self._allow = allow_private_hosts
        self._probe_timeout_s = probe_timeout_s
        self._clock = clock
        # ref -> (the resource as probed, outcome, actions to register or None)
        self._probed: dict[str, tuple[AgentResource, _Outcome, list[str] | None]] = {}
        self.registrations: dict[str, str] = {}  # agent -> ref of the resource registering it

    async def reconcile(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Register as the resources say, asking the reconciled one's agent afresh."""
        found = parse_agent_resource(resource)
        if isinstance(found, AgentResource):
            self._probed.pop(found.ref, None)
        await self._sync(view)

    async def delete(self, resource: dict[str, Any], view: ResourceView) -> None:
        """Register as the remaining resources say (the agent goes, or passes to the next
        oldest resource naming it)."""
        await self._sync(view)

    async def _sync(self, view: ResourceView) -> None:
        parsed = [(item, parse_agent_resource(item)) for item in view.items()]
        # Two resources naming one agent: the older one registers it, the other says so.
        candidates = [p for _, p in parsed if isinstance(p, AgentResource)]
        winners = oldest_per(candidates, lambda c: c.agent)
        async with self._sessionmaker() as session:
            before = await registered_agents(session)
            rows = await session.execute(select(AgentHealth.agent, AgentHealth.status))
            health = {agent: status for agent, status in rows}  # noqa: C416 (Row objects)
        external = [winner for agent, winner in winners.items() if not builtin(agent)]
        unread = [w for w in external if (self._probed.get(w.ref) or (None,))[0] != w]
        # Each agent is asked at once: one slow agent must not hold the others' status back.
        probed = await asyncio.gather(*(self._probe(w, before.get(w.agent)) for w in unread))
        for winner, (outcome, actions) in zip(unread, probed, strict=True):
            self._probed[winner.ref] = (winner, outcome, actions)
        refs = {winner.ref for winner in external}
        self._probed = {ref: read for ref, read in self._probed.items() if ref in refs}
        outcomes = {ref: outcome for ref, (_, outcome, _) in self._probed.items()}
        kept = {
            winner.agent: actions
            for winner in external
            if (actions := self._probed[winner.ref][2]) is not None
        }
        async with self._sessionmaker() as session, session.begin():
            for agent, actions in kept.items():
                registering = winners[agent]
                await session.execute(
                    _REGISTER,
                    {
                        "name": agent,
                        "base_url": registering.base_url,
                        "actions": actions,
                        "timeout_s": registering.timeout_s,
                        "max_concurrency": registering.max_concurrency,
                        "credentials": registering.credentials,
                        "resource": registering.ref,
                    },
                )
            await session.execute(_RELEASE, {"kept": list(kept)})
        self.registrations = {agent: winners[agent].ref for agent in kept}
        for item, asked in parsed:
            outcome = self._outcome(asked, winners, outcomes)
            await self._report(item, outcome, asked, health, view)

    async def _probe(self, found: AgentResource, before: Any) -> tuple[_Outcome, list[str] | None]:
        """(outcome, actions to register or None) for the resource that names its agent."""
        assert found.base_url is not None  # parse refuses a non-built-in agent without one
        try:
            actions = await read_actions(
                self._http,
                found.base_url,
                token=self._token,
                allow_private_hosts=self._allow,
                timeout_s=self._probe_timeout_s,
            )
        except ProbeFailed as exc:
            message = str(exc.details[0]["message"])
            reason = "InvalidSpec" if exc.reason == "HostNotAllowed" else exc.reason
            # An agent away for a moment keeps the registration read from it before (same
            # address): runs go on retrying it rather than failing as an unknown agent.
            if reason != "InvalidSpec" and before is not None and before.base_url == found.base_url:
                kept = sorted(before.actions)
                message += "; the registration read before stands"
                return _Outcome("Registered", False, reason, message, kept), kept
            return _Outcome("Failed", False, reason, message), None
        shown = ", ".join(actions)
        message = f"registered at {found.base_url} with actions {shown}"
        return _Outcome("Registered", True, "Registered", message, actions), actions

    @staticmethod
    def _outcome(
        found: AgentResource | str,
        winners: Mapping[str, AgentResource],
        outcomes: Mapping[str, _Outcome],
    ) -> _Outcome:
        if isinstance(found, str):
            return _Outcome("Failed", False, "InvalidSpec", found)
        if winners[found.agent].ref != found.ref:
            message = f"{found.agent} is registered by the older Agent {winners[found.agent].ref}"
            return _Outcome("Failed", False, "Conflict", message)
        if builtin(found.agent):
            if found.base_url is not None:
                message = (
                    f"{found.agent} is a built-in agent: its address comes from AGENT_URLS; "
                    "remove baseUrl, or name another agent"
                )
                return _Outcome("Failed", False, "Conflict", message)
            return _Outcome("BuiltIn", True, "BuiltIn", f"{found.agent} is a built-in agent")
        return outcomes[found.ref]

    async def _report(
        self,
        item: dict[str, Any],
        outcome: _Outcome,
        found: AgentResource | str,
        health: Mapping[str, str],
        view: ResourceView,
    ) -> None:
        metadata = item.get("metadata") or {}
        generation = int(metadata.get("generation") or 1)
        condition = ready_condition(
            status=outcome.ready,
            reason=outcome.reason,
            message=outcome.message,
            generation=generation,
            now=self._clock(),
        )
        agent = found.agent if isinstance(found, AgentResource) else None
        status = {
            "observedGeneration": generation,
            "phase": outcome.phase,
            # None removes actions written earlier (a merge patch): they would no longer be true.
            "actions": outcome.actions,
            "health": health.get(agent, "unknown")
            if agent and outcome.phase in ("Registered", "BuiltIn")
            else None,
            "conditions": merge_conditions((item.get("status") or {}).get("conditions"), condition),
        }
        if status_differs(item, status):
            await view.write_status(item, status)
