"""Reading what the admission gates need from PostgreSQL: active runs, throttles, the queue."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.gates import Candidate, Load, Pause, source_host
from shared.db.queue import queue_sizes

# A run holds a slot from admission until it ends.
ACTIVE = (
    "(status IN ('RUNNING', 'COMPENSATING') OR (status = 'PENDING' AND admitted_at IS NOT NULL))"
)


async def lock_admission(session: AsyncSession, schema: str | None) -> None:
    """Serialise admission decisions of every controller replica (until the transaction ends)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"ingestion_admission:{schema or 'public'}"},
    )


async def waiting_runs(session: AsyncSession, *, limit: int) -> list[Candidate]:
    """Runs held back by a policy, highest priority and oldest first."""
    rows = await session.execute(
        text(
            "SELECT id, workflow_name, kind, inputs, priority, created_at, status_reason "
            "FROM workflow_runs WHERE status = 'PENDING' AND admitted_at IS NULL "
            "ORDER BY priority DESC, created_at, id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [
        Candidate(
            run_id=r.id,
            workflow=r.workflow_name,
            kind=r.kind,
            inputs=r.inputs,
            priority=r.priority,
            created_at=r.created_at,
            status_reason=r.status_reason,
        )
        for r in rows
    ]


async def _host_counts(
    session: AsyncSession, config: OrchestratorsConfig, now: datetime, load: Load
) -> None:
    api = config.api_manager
    names = api.host_inputs
    active = await session.execute(
        text(f"SELECT inputs FROM workflow_runs WHERE kind = ANY(:kinds) AND {ACTIVE}"),
        {"kinds": api.kinds},
    )
    for row in active:
        host = source_host(row.inputs, names)
        if host is not None:
            load.by_host[host] += 1
    recent = await session.execute(
        text("SELECT inputs FROM workflow_runs WHERE kind = ANY(:kinds) AND admitted_at > :since"),
        {"kinds": api.kinds, "since": now - timedelta(seconds=api.host_rate_window_s)},
    )
    for row in recent:
        host = source_host(row.inputs, names)
        if host is not None:
            load.recent_by_host[host] += 1
    # A throttled call is only visible while its step row rests in a failed or retry state.
    throttled = await session.execute(
        text(
            "SELECT r.inputs, coalesce(s.finished_at, s.attempt_started_at) AS at, s.error "
            "FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id "
            "WHERE s.status IN ('FAILED', 'RETRY_WAIT', 'TIMED_OUT') "
            "AND coalesce(s.finished_at, s.attempt_started_at) > :since "
            "AND r.kind = ANY(:kinds) "
            "AND (s.error->>'code' = ANY(:codes) OR s.error->>'status' = ANY(:statuses))"
        ),
        {
            "since": now - timedelta(seconds=api.pause_cooldown_s),
            "kinds": api.kinds,
            "codes": api.pause_error_codes,
            "statuses": [str(s) for s in api.pause_statuses],
        },
    )
    for row in throttled:
        host = source_host(row.inputs, names)
        if host is None:
            continue
        until = row.at + timedelta(seconds=api.pause_cooldown_s)
        current = load.paused.get(host)
        if current is None or until > current.until:
            code = (row.error or {}).get("code", "throttling")
            status = (row.error or {}).get("status")
            why = f"HTTP {status}" if status in api.pause_statuses else str(code)
            load.paused[host] = Pause(until=until, why=why)


async def current_load(
    session: AsyncSession,
    config: OrchestratorsConfig,
    now: datetime,
    *,
    hosts: bool,
    queue: bool,
) -> Load:
    """Counts of admitted unfinished runs; per-host state and queue size only when asked."""
    load = Load()
    rows = await session.execute(
        text(
            f"SELECT workflow_name, kind, count(*) AS n FROM workflow_runs WHERE {ACTIVE} "
            "GROUP BY workflow_name, kind"
        )
    )
    for row in rows:
        load.total += row.n
        load.by_workflow[row.workflow_name] += row.n
        load.by_manager[config.manager_of(row.kind)] += row.n
    if hosts:
        await _host_counts(session, config, now, load)
    if queue:
        sizes = await queue_sizes(session)
        load.backlog, load.queue_size = sizes.backlog, sizes.queued
    return load
