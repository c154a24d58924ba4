"""Handing accepted runs to the engine (POST /execute), again and again until one starts them.

The engine also finds admitted runs on its own (NOTIFY and its start-up scan), so a run whose
hand-off fails is never stranded; this loop makes the hand-off explicit and observable.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.settings import ControllerSettings
from shared.auth import service_headers

log = logging.getLogger(__name__)


class Handoff:
    def __init__(
        self,
        settings: ControllerSettings,
        sessionmaker: async_sessionmaker,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.http = http
        self._pending: set[asyncio.Task[bool]] = set()

    def kick(self, run_id: uuid.UUID) -> None:
        """Hand one run over now, without making the client wait for the engine."""
        task = asyncio.create_task(self.execute(run_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def execute(self, run_id: uuid.UUID) -> bool:
        """POST /execute; False when the engine could not be reached (the run stays PENDING)."""
        try:
            response = await self.http.post(
                f"{self.settings.engine_url}/execute",
                json={"run_id": str(run_id)},
                headers=service_headers(self.settings.service_token.get_secret_value()),
                timeout=5.0,
            )
        except httpx.HTTPError as exc:
            log.info("engine unreachable for run %s: %s", run_id, exc)
            return False
        if response.status_code >= 400:
            log.warning("engine refused run %s: %s %s", run_id, response.status_code, response.text)
            return False
        return True

    async def run(self) -> None:
        """Re-hand runs that are admitted but still PENDING after a while."""
        while True:
            await asyncio.sleep(self.settings.handoff_interval_s)
            try:
                async with self.sessionmaker() as session:
                    rows = await session.execute(
                        text(
                            "SELECT id FROM workflow_runs WHERE status = 'PENDING' "
                            "AND admitted_at IS NOT NULL "
                            "AND admitted_at < now() - make_interval(secs => :age) "
                            "ORDER BY priority DESC, created_at LIMIT 50"
                        ),
                        {"age": self.settings.handoff_interval_s},
                    )
                    stranded = [row.id for row in rows]
                for run_id in stranded:
                    if not await self.execute(run_id):
                        break  # engine down: try again next round
            except Exception as exc:  # database restarting: keep going
                log.warning("handoff round failed: %s", exc)

    async def aclose(self) -> None:
        """Wait briefly for hand-offs in flight."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=2.0)
