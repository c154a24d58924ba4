"""The five orchestrators applied: shaping a run's spec, admitting runs, and their live view.

Every decision happens under one advisory lock per schema, so the controller replicas agree:
a run accepted by `/coordinate` is admitted at once only if the gates let it through behind
every run already waiting with at least its priority; the admission loop re-evaluates the
waiting runs (highest priority, oldest first) as slots free up.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.gates import Candidate, take
from services.orchestrator_controller.policies.gates import wait_reason as gate
from services.orchestrator_controller.policies.state import (
    current_load,
    lock_admission,
    waiting_runs,
)
from shared.spec.models import WorkflowSpec
from shared.state.admission import admit_runs, hold_runs

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# manager -> configuration field -> where its value comes from: `default`, `settings`
# (CONTROLLER_ORCHESTRATORS) or `resource <name>` (an Orchestrator resource)
Sources = dict[str, dict[str, str]]

MANAGERS = ("api_manager", "batch_manager", "file_manager", "ingestion_manager", "stream_manager")


def utc_now() -> datetime:
    """The real time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class Decision:
    """Whether a run being accepted starts now, or why it waits."""

    admit: bool
    reason: str | None = None


def settings_sources(config: OrchestratorsConfig) -> Sources:
    """Where each field of a configuration read from settings comes from: a field the
    settings' JSON gave is `settings`, any other `default`."""
    sources: Sources = {}
    for manager in MANAGERS:
        given = manager in config.model_fields_set
        section = getattr(config, manager)
        sources[manager] = {
            name: "settings" if given and name in section.model_fields_set else "default"
            for name in type(section).model_fields
        }
    return sources


class Policies:
    """The orchestrators as admission policies over the runs stored in PostgreSQL.

    `config` is replaced whole (never edited in place) when Orchestrator resources change it:
    every decision reads it once, so it sees one configuration from start to end.
    """

    def __init__(
        self, config: OrchestratorsConfig, clock: Clock = utc_now, sources: Sources | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.sources: Sources = sources or settings_sources(config)

    def apply(self, config: OrchestratorsConfig, sources: Sources) -> bool:
        """Put `config` in force (live: the next admission decision uses it); log each field
        that changes. Returns whether anything changed."""
        if config == self.config and sources == self.sources:
            return False
        before, after = self.config.model_dump(mode="json"), config.model_dump(mode="json")
        for manager in MANAGERS:
            for name, value in after[manager].items():
                old, source = before[manager][name], sources[manager][name]
                if old != value or self.sources.get(manager, {}).get(name) != source:
                    log.info(
                        "orchestrators: %s.%s is now %s (from %s; was %s)",
                        manager,
                        name,
                        value,
                        source,
                        old,
                    )
        self.config, self.sources = config, sources
        return True

    def shape(
        self, spec: WorkflowSpec, inputs: dict[str, Any]
    ) -> tuple[WorkflowSpec, dict[str, Any]]:
        """The file manager's fan-out ceiling and chunk size applied to a run about to start."""
        config = self.config
        if config.manager_of(spec.kind) != "file_manager":
            return spec, inputs
        files = config.file_manager
        steps = [
            step.model_copy(update={"map_concurrency": min(step.map_concurrency, files.max_fanout)})
            if step.map_over is not None
            else step
            for step in spec.steps
        ]
        shaped_inputs = dict(inputs)
        if "chunk_size" in spec.inputs and "chunk_size" not in inputs:
            shaped_inputs["chunk_size"] = files.chunk_size
        return spec.model_copy(update={"steps": steps}), shaped_inputs

    async def _round(
        self, session: AsyncSession, *, schema: str | None, news: list[Candidate]
    ) -> tuple[list[uuid.UUID], list[str | None]]:
        """Admit what the gates allow: waiting runs and `news` (runs being accepted, in order).

        Returns the waiting runs admitted and, per new run, why it must wait (None: admitted).
        """
        await lock_admission(session, schema)
        config = self.config
        now = self.clock()
        queue = await waiting_runs(session, limit=config.batch_manager.max_waiting_considered)
        if not news and not queue:
            return [], []
        # A new run goes behind every waiting run of at least its priority (a stable sort).
        candidates = sorted([*queue, *news], key=lambda c: -c.priority)
        managers = {config.manager_of(c.kind) for c in candidates}
        load = await current_load(
            session,
            config,
            now,
            hosts="api_manager" in managers,
            queue="stream_manager" in managers,
        )
        admitted: list[uuid.UUID] = []
        held: dict[uuid.UUID, str] = {}
        new_reasons: dict[int, str | None] = {}
        fresh = {id(c) for c in news}
        for candidate in candidates:
            reason = gate(config, load, candidate, now)
            if id(candidate) in fresh:
                new_reasons[id(candidate)] = reason
            elif reason is None:
                assert candidate.run_id is not None
                admitted.append(candidate.run_id)
            elif reason != candidate.status_reason:
                assert candidate.run_id is not None
                held[candidate.run_id] = reason
            if reason is None:
                take(config, load, candidate)
        await admit_runs(session, admitted, schema=schema)
        await hold_runs(session, held, schema=schema)
        return admitted, [new_reasons[id(c)] for c in news]

    async def decide_many(
        self,
        session: AsyncSession,
        runs: list[tuple[WorkflowSpec, dict[str, Any], int]],
        *,
        schema: str | None,
    ) -> list[Decision]:
        """May runs being accepted start now? In order: each sees the slots the ones before it
        took, exactly as if they had come one by one (runs waiting ahead are admitted too)."""
        now = self.clock()
        news = [
            Candidate(
                run_id=None,
                workflow=spec.name,
                kind=spec.kind,
                inputs=inputs,
                priority=priority,
                created_at=now,
            )
            for spec, inputs, priority in runs
        ]
        _, reasons = await self._round(session, schema=schema, news=news)
        return [Decision(admit=reason is None, reason=reason) for reason in reasons]

    async def admit_waiting(self, session: AsyncSession, *, schema: str | None) -> list[uuid.UUID]:
        """Admit every waiting run the policies now allow; refresh the others' reasons."""
        admitted, _ = await self._round(session, schema=schema, news=[])
        return admitted

    async def snapshot(self, session: AsyncSession) -> dict[str, dict[str, Any]]:
        """Live counts per manager, for GET /orchestrators."""
        return await self.snapshot_of(session, self.config)

    async def snapshot_of(
        self, session: AsyncSession, config: OrchestratorsConfig
    ) -> dict[str, dict[str, Any]]:
        """Live counts per manager as `config` assigns the runs to managers."""
        now = self.clock()
        load = await current_load(session, config, now, hosts=True, queue=True)
        waiting = await session.execute(
            text(
                "SELECT kind, count(*) AS n FROM workflow_runs "
                "WHERE status = 'PENDING' AND admitted_at IS NULL GROUP BY kind"
            )
        )
        waiting_by: Counter[str] = Counter()
        for row in waiting:
            waiting_by[config.manager_of(row.kind)] += row.n
        streams = (
            await session.execute(
                text(
                    "SELECT count(*) AS schedules, count(r.id) AS alive FROM schedules s "
                    "LEFT JOIN workflow_runs r ON r.id = s.last_run_id "
                    "AND r.status IN ('PENDING', 'RUNNING', 'COMPENSATING') "
                    "WHERE s.enabled AND s.trigger = 'continuous'"
                )
            )
        ).one()
        api = config.api_manager
        hosts = sorted(set(load.by_host) | set(load.recent_by_host) | set(load.paused))
        live: dict[str, dict[str, Any]] = {
            name: {"active_runs": load.by_manager[name], "waiting_runs": waiting_by[name]}
            for name in MANAGERS
            if name != "batch_manager"
        }
        live["batch_manager"] = {
            "active_runs": load.total,
            "waiting_runs": sum(waiting_by.values()),
            "workflow_queue_size": load.queue_size,
            "active_by_workflow": dict(load.by_workflow),
        }
        live["api_manager"]["hosts"] = {
            host: {
                "active_runs": load.by_host[host],
                "admitted_in_window": load.recent_by_host[host],
                "paused_until": (
                    pause.until.isoformat()
                    if (pause := load.paused.get(host)) and pause.until > now
                    else None
                ),
                "paused_because": pause.why if pause and pause.until > now else None,
            }
            for host in hosts
        }
        live["api_manager"]["host_rule"] = (
            f"host of the first URL among inputs {', '.join(api.host_inputs)}"
        )
        live["stream_manager"]["backpressure"] = (
            load.backlog >= config.stream_manager.backpressure_queue_size
        )
        live["stream_manager"]["engine_backlog"] = load.backlog
        live["stream_manager"]["continuous_schedules"] = streams.schedules
        live["stream_manager"]["continuous_alive"] = streams.alive
        return live
