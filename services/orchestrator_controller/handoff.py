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
from shared.state.admission import note_unclaimed

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
        self._queued: list[uuid.UUID] = []
        self._sender: asyncio.Task[None] | None = None
        self._engine_answered = True

    def kick(self, run_id: uuid.UUID) -> None:
        """Hand a run over soon, without making the client wait for the engine.

        Runs accepted while a hand-off is in flight go together in the next one.
        """
        self._queued.append(run_id)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued())

    async def _send_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:500], self._queued[500:]
            await self.execute(batch)

    async def execute(self, run_ids: list[uuid.UUID]) -> bool:
        """POST /execute; False when the engine could not be reached (the runs stay PENDING)."""
        try:
            response = await self.http.post(
                f"{self.settings.engine_url}/execute",
                json={"run_ids": [str(run_id) for run_id in run_ids]},
                headers=service_headers(self.settings.service_token.get_secret_value()),
                timeout=5.0,
            )
        except httpx.HTTPError as exc:
            log.info("engine unreachable for %d runs: %s", len(run_ids), exc)
            self._engine_answered = False
            return False
        if response.status_code >= 400:
            log.warning("engine refused runs: %s %s", response.status_code, response.text[:500])
            self._engine_answered = False
            return False
        self._engine_answered = True
        return True

    async def run(self) -> None:
        """Re-hand runs that are admitted but still PENDING after a while."""
        while True:
            await self.settings.live.sleep("handoff_interval_s")
            try:
                async with self.sessionmaker() as session:
                    rows = await session.execute(
                        text(
                            "SELECT id FROM workflow_runs WHERE status = 'PENDING' "
                            "AND admitted_at IS NOT NULL "
                            "AND admitted_at < now() - make_interval(secs => :age) "
                            "ORDER BY priority DESC, created_at LIMIT 50"
                        ),
                        {"age": self.settings.live.current.handoff_interval_s},
                    )
                    stranded = [row.id for row in rows]
                if stranded:
                    await self.execute(stranded)  # engine down: try again next round
                await self._explain_unclaimed()
            except Exception as exc:  # database restarting: keep going
                log.warning("handoff round failed: %s", exc)

    async def _explain_unclaimed(self) -> None:
        """A run no engine starts says so, rather than sitting PENDING with no reason."""
        after_s = self.settings.live.current.unclaimed_after_s
        reason = f"waiting: no engine has claimed this run for {after_s:g} s"
        if not self._engine_answered:
            reason += f"; the engine at {self.settings.engine_url} does not answer"
        async with self.sessionmaker() as session, session.begin():
            await note_unclaimed(
                session, after_s=after_s, reason=reason, schema=self.settings.db_schema
            )

    async def aclose(self) -> None:
        """Wait briefly for hand-offs in flight."""
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=2.0)
