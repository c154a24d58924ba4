"""Gauges of platform state that lives in PostgreSQL, refreshed by the admission loop.

Every controller replica reports the same numbers (they are read from the shared database, like
`workflow_queue_size`), so dashboards and alerts take `max` over replicas, never `sum`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.gates import reason_code
from services.orchestrator_controller.policies.state import current_load
from shared.events.relay import RELAY_LOCK_ID, RELAY_STATE
from shared.metrics import PlatformMetrics

_WAITING = text(
    "SELECT kind, status_reason, count(*) AS n FROM workflow_runs "
    "WHERE status = 'PENDING' AND admitted_at IS NULL GROUP BY kind, status_reason"
)
# How late each enabled schedule's next fire is: 0 until it is due, growing while the ticker
# does not act on it (every controller down, or its ticks failing).
_SCHEDULE_LAG = text(
    "SELECT name, greatest(extract(epoch FROM (CAST(:now AS timestamptz) - next_due_at)), 0) "
    "AS lag_s FROM schedules WHERE enabled AND next_due_at IS NOT NULL"
)


async def refresh_gauges(
    session: AsyncSession,
    metrics: PlatformMetrics,
    *,
    config: OrchestratorsConfig,
    schema: str | None,
    now: datetime,
) -> None:
    """Read the waiting runs, the relay, the schedules and the API hosts; set the gauges."""
    waiting: Counter[tuple[str, str]] = Counter()
    for row in await session.execute(_WAITING):
        waiting[(row.kind, reason_code(row.status_reason))] += row.n
    relay = (
        await session.execute(
            text(RELAY_STATE), {"lock_id": RELAY_LOCK_ID, "schema": schema or "public"}
        )
    ).one()
    schedules = (await session.execute(_SCHEDULE_LAG, {"now": now})).all()
    load = await current_load(session, config, now, hosts=True, queue=False)
    # Every read is done: the gauges change together, with no await in between, so a scrape
    # never sees a label set half replaced.
    metrics.admission_waiting.clear()
    for (kind, code), count in waiting.items():
        metrics.admission_waiting.labels(kind, code).set(count)
    metrics.relay_active.set(1 if relay.active else 0)
    metrics.relay_lag.set(float(relay.lag_s or 0.0))
    metrics.schedule_fire_lag.clear()
    for schedule in schedules:
        metrics.schedule_fire_lag.labels(schedule.name).set(float(schedule.lag_s))
    metrics.api_host_paused.clear()
    metrics.api_host_admissions.clear()
    for host in sorted(set(load.by_host) | set(load.recent_by_host) | set(load.paused)):
        pause = load.paused.get(host)
        metrics.api_host_paused.labels(host).set(1 if pause and pause.until > now else 0)
        metrics.api_host_admissions.labels(host).set(load.recent_by_host[host])
    metrics.api_host_rate_limit.set(config.api_manager.host_rate_limit)
