"""Each agent process beats a heartbeat row, so a crashed one's ledger claims end at once.

A claim (agents/base/ledger.py) names the process holding it. When that process is killed
mid-action, its claim would block the step's retries until `claimed_until` (minutes); instead
the next request for the key sees that the holder stopped beating `dead_after_s` ago and takes
the claim over. `dead_after_s` is several heartbeats plus a database restart, so a live process
whose database was away for a moment keeps its claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

log = logging.getLogger(__name__)

# Rows of processes gone this long are deleted when another starts: the table stays small.
_FORGET_AFTER = "1 day"


class Heartbeat:
    """This process's row in agent_instances, refreshed every `interval_s` until stopped."""

    def __init__(self, agent: str, sessionmaker: async_sessionmaker, interval_s: float) -> None:
        self.agent = agent
        self.sessionmaker = sessionmaker
        self.interval_s = interval_s
        self.instance_id = f"{agent}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Beat once now (so claims made from the first request on have a live holder), then
        every `interval_s`. A database that is away at start only delays the first beat."""
        try:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    text(
                        "DELETE FROM agent_instances "
                        f"WHERE heartbeat_at < now() - interval '{_FORGET_AFTER}'"
                    )
                )
            await self._beat_once()
        except Exception as exc:
            log.warning("first heartbeat of %s missed: %s", self.instance_id, exc)
        self._task = asyncio.create_task(self._beat(), name=f"{self.agent}-heartbeat")

    async def _beat_once(self) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO agent_instances (instance_id, agent, host, pid) "
                    "VALUES (:id, :agent, :host, :pid) ON CONFLICT (instance_id) "
                    "DO UPDATE SET heartbeat_at = now()"
                ),
                {
                    "id": self.instance_id,
                    "agent": self.agent,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                },
            )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._beat_once()
            except Exception as exc:  # the database away for a moment: beat again next time
                log.warning("heartbeat of %s missed: %s", self.instance_id, exc)

    async def stop(self) -> None:
        """Stop beating and remove the row (every request this process served has ended)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    text("DELETE FROM agent_instances WHERE instance_id = :id"),
                    {"id": self.instance_id},
                )
