"""The retention loop: finished runs older than `retention_days` are deleted, a batch at a time.

Every controller replica runs it (a batch skips the runs another replica holds); both settings
are live, so a Config resource can shorten retention or turn it off (0) without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.errors import is_unavailable
from shared.state.retention import purge_finished_runs

if TYPE_CHECKING:
    from services.orchestrator_controller.settings import ControllerSettings

log = logging.getLogger(__name__)

BATCH = 500  # runs per transaction: a short lock on each, a bounded WAL record per commit


class RetentionLoop:
    def __init__(self, settings: ControllerSettings, sessionmaker: async_sessionmaker) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker

    async def purge(self, now: datetime | None = None) -> int:
        """Delete every finished run past retention, batch by batch; how many went."""
        days = self.settings.live.current.retention_days
        if days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                deleted = await purge_finished_runs(session, cutoff=cutoff, batch=BATCH)
            total += deleted
            if deleted < BATCH:
                break
            await asyncio.sleep(0)  # let requests in between batches
        if total:
            log.info("deleted %d runs finished before %s (retention %g days)", total, cutoff, days)
        return total

    async def run(self) -> None:
        while True:
            await self.settings.live.sleep("retention_interval_s")
            try:
                await self.purge()
            except Exception as exc:  # the next round tries again, like the other loops
                if is_unavailable(exc):
                    log.warning("retention skipped, database unavailable: %s", exc)
                else:
                    log.exception("retention failed; trying again next round")
