"""The lineage loop: run lifecycle events from Redis Streams to OpenLineage, at least once.

It reads the ingestion.workflow.* streams through one consumer group, so each event goes to one
controller replica, and acknowledges an event only once its RunEvent was delivered. An event
whose delivery fails stays pending and is tried again after `lineage_retry_s`, together with
what came after it and in sequence order, so a run's START never follows its end; events a
dead replica left pending are taken over after `lineage_claim_idle_s`. The group lives in
Redis across restarts, and is created at the streams' start, so events published before the
first controller ran are not missed either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator_controller.lineage.builder import (
    LIFECYCLE_STREAMS,
    LineageNames,
    build_event,
)
from services.orchestrator_controller.lineage.emitter import (
    LINEAGE_STREAM,
    Emitter,
    HttpEmitter,
    LineageRejected,
    StreamEmitter,
)
from services.orchestrator_controller.settings import ControllerSettings

log = logging.getLogger(__name__)

GROUP = "ingestion-lineage"
BATCH = 500


@dataclass(frozen=True)
class Entry:
    stream: str
    entry_id: str
    event: dict[str, Any] | None  # None: trimmed from the stream before it was delivered


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stop_if_cancelled() -> None:
    """Honour a cancellation a Redis call swallowed (redis-py can, under a racing read; the
    task still counts it), or the loop would outlive the app that cancelled it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LineageLoop:
    """Delivers the OpenLineage event of each run lifecycle event; run `run()` in the background."""

    def __init__(
        self,
        settings: ControllerSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        emitter: Emitter,
        *,
        consumer: str | None = None,
        block_ms: int = 2000,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.emitter = emitter
        # An event the endpoint refuses outright is kept here rather than retried forever.
        self.refused = StreamEmitter(redis, settings.stream_prefix + LINEAGE_STREAM)
        self.names = LineageNames(
            namespace=settings.openlineage_namespace,
            target_database_url=settings.lineage_target_database_url or settings.database_url,
        )
        self.streams = [settings.stream_prefix + stream for stream in LIFECYCLE_STREAMS]
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.block_ms = block_ms
        self.retry_s = settings.lineage_retry_s
        self.claim_idle_ms = int(settings.lineage_claim_idle_s * 1000)

    @classmethod
    def from_settings(
        cls,
        settings: ControllerSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
    ) -> LineageLoop:
        """The loop delivering to OPENLINEAGE_URL, or to the lineage stream when it is unset."""
        emitter: Emitter
        if settings.openlineage_url:
            key = settings.openlineage_api_key
            emitter = HttpEmitter(
                settings.openlineage_url,
                api_key=key.get_secret_value() if key else None,
                timeout_s=settings.openlineage_timeout_s,
            )
        else:
            emitter = StreamEmitter(redis, settings.stream_prefix + LINEAGE_STREAM)
        return cls(settings, sessionmaker, redis, emitter)

    async def run(self) -> None:
        """Deliver events for as long as the app runs; Redis or the database away: wait."""
        while True:
            try:
                await self.ensure_group()
                while True:
                    delivered = await self.deliver_once()
                    _stop_if_cancelled()
                    if not delivered:
                        await asyncio.sleep(self.retry_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _stop_if_cancelled()
                log.warning("lineage loop interrupted: %s", exc)
                await asyncio.sleep(self.retry_s)

    async def aclose(self) -> None:
        """Release the emitter's connections."""
        await self.emitter.aclose()

    async def ensure_group(self) -> None:
        """Create the consumer group on every lifecycle stream (once; kept across restarts)."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def deliver_once(self) -> bool:
        """One round: take over abandoned events, retry this consumer's pending ones, else read
        new ones; return False when a delivery failed (it and later events wait)."""
        for stream in self.streams:
            await self.redis.xautoclaim(
                stream, GROUP, self.consumer, self.claim_idle_ms, count=BATCH, justid=True
            )
        entries = await self._read("0", block_ms=None)
        _stop_if_cancelled()
        if not entries:
            entries = await self._read(">", block_ms=self.block_ms)
            _stop_if_cancelled()
        for entry in sorted(entries, key=lambda e: (e.event or {}).get("sequence", 0)):
            if entry.event is not None:
                try:
                    await self._deliver(entry.event)
                except Exception as exc:
                    log.warning(
                        "lineage of run %s not delivered, retried in %gs: %s",
                        entry.event.get("run_id"),
                        self.retry_s,
                        exc,
                    )
                    return False
            await self.redis.xack(entry.stream, GROUP, entry.entry_id)
        return True

    async def _read(self, position: str, *, block_ms: int | None) -> list[Entry]:
        replies: Any = await self.redis.xreadgroup(
            GROUP,
            self.consumer,
            dict.fromkeys(self.streams, position),
            count=BATCH,
            block=block_ms,
        )
        entries = []
        for stream, messages in replies or []:
            for entry_id, fields in messages:
                raw = (fields or {}).get(b"event") or (fields or {}).get("event")
                event = json.loads(raw) if raw else None
                entries.append(Entry(_text(stream), _text(entry_id), event))
        return entries

    async def _deliver(self, event: dict[str, Any]) -> None:
        try:
            async with self.sessionmaker() as session:
                lineage = await build_event(session, event, self.names)
        except ValueError as exc:  # the event or its run's stored spec is malformed: final
            log.error("no lineage for event %s: %s", event.get("id"), exc)
            return
        if lineage is None:
            return
        try:
            await self.emitter.emit(lineage)
        except LineageRejected as exc:
            log.error(
                "lineage endpoint refused the %s event of run %s (kept on %s): %s",
                lineage.eventType,
                lineage.run.runId,
                self.refused.stream,
                exc,
            )
            await self.refused.emit(lineage)
