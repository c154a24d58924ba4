"""The admission loop: re-evaluate waiting runs as slots free up, and export the queue size
and the other gauges of platform state (services/orchestrator_controller/gauges.py)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.gauges import refresh_gauges
from services.orchestrator_controller.handoff import Handoff
from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.queue import queue_sizes
from shared.metrics import PlatformMetrics

log = logging.getLogger(__name__)


class AdmissionLoop:
    """Admits waiting runs as the policies allow, every `admission_interval_s`."""

    def __init__(
        self,
        settings: ControllerSettings,
        sessionmaker: async_sessionmaker,
        policies: Policies,
        metrics: PlatformMetrics,
        handoff: Handoff | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.metrics = metrics
        self.handoff = handoff

    async def round(self) -> list[uuid.UUID]:
        """One pass: admit what the policies allow now; return the admitted run ids."""
        async with self.sessionmaker() as session, session.begin():
            admitted = await self.policies.admit_waiting(session, schema=self.settings.db_schema)
        async with self.sessionmaker() as session:
            # Waiting runs are part of the queue a user sees, not only ready steps.
            sizes = await queue_sizes(session)
        self.metrics.workflow_queue_size.set(sizes.queued)
        self.metrics.engine_backlog.set(sizes.backlog)
        if self.handoff is not None:
            for run_id in admitted:
                self.handoff.kick(run_id)
        async with self.sessionmaker() as session:
            await refresh_gauges(
                session,
                self.metrics,
                config=self.policies.config,
                schema=self.settings.db_schema,
                now=self.policies.clock(),
            )
        return admitted

    async def run(self) -> None:
        """Every `admission_interval_s`, for the life of the app."""
        while True:
            await self.settings.live.sleep("admission_interval_s")
            try:
                admitted = await self.round()
                if admitted:
                    log.info("admitted %d waiting runs", len(admitted))
            except Exception as exc:  # database restarting: try again next round
                log.warning("admission round failed: %s", exc)
