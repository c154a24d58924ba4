"""The seed's four schedules, created at the first start and never duplicated afterwards.

A seed whose workflow is not registered yet (or does not validate with the seed's inputs) is
created disabled with the reason; the ticker enables it as soon as the workflow validates.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.schedules import service
from services.orchestrator_controller.schedules.schemas import ScheduleCreate
from shared.db.models import Schedule
from shared.errors import AppError

log = logging.getLogger(__name__)

SEEDS: tuple[ScheduleCreate, ...] = (
    ScheduleCreate(
        name="base_standard_ingestion_workflow", workflow="standard", cron="0 */6 * * *"
    ),
    ScheduleCreate(
        name="base_secure_api_ingestion_workflow", workflow="secure_api", cron="0 */4 * * *"
    ),
    ScheduleCreate(
        name="base_bulk_file_ingestion_workflow", workflow="bulk_file", cron="0 */12 * * *"
    ),
    ScheduleCreate(
        name="base_realtime_stream_ingestion",
        workflow="realtime_stream",
        continuous=True,
        min_interval_s=60,
        backoff_initial_s=30,
        backoff_max_s=900,
    ),
)


async def ensure_seed_schedules(session: AsyncSession, *, now: datetime) -> list[str]:
    """Create the seed schedules that do not exist yet; return the names created."""
    existing = set((await session.execute(select(Schedule.name))).scalars())
    created: list[str] = []
    for seed in SEEDS:
        if seed.name in existing:
            continue
        reason = None
        try:
            await service.check_target(
                session, workflow=seed.workflow, version=seed.version, inputs=seed.inputs
            )
        except AppError as exc:
            reason = f"disabled until it validates: {exc.message}"
        body = seed.model_copy(update={"enabled": reason is None})
        schedule = await service.create(session, body=body, now=now, source="seed", validate=False)
        if schedule is None:
            continue  # another replica created it just now
        if reason is not None:
            schedule.auto_enable, schedule.status_reason = True, reason
            log.info("seed schedule %s created disabled: %s", seed.name, reason)
        created.append(seed.name)
    await session.flush()
    return created
