"""The outbox relay: publishes committed events to Redis Streams in outbox order.

One relay is active at a time across all processes (a PostgreSQL advisory lock), which keeps
the per-run order of events. When Redis is down the rows stay unpublished and go out later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.session import asyncpg_dsn
from shared.events.outbox import outbox_channel
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

RELAY_LOCK_ID = 72002
STREAM_MAXLEN = 100_000

_BATCH = text(
    "SELECT id, event_id, stream, payload, created_at FROM event_outbox "
    "WHERE published_at IS NULL ORDER BY id LIMIT :limit"
)
_MARK = text("UPDATE event_outbox SET published_at = now() WHERE id = ANY(:ids)")


class OutboxRelay:
    """Moves outbox rows to Redis Streams; run `run()` as a background task."""

    def __init__(
        self,
        settings: CommonSettings,
        sessionmaker: async_sessionmaker,
        redis: aioredis.Redis,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()

    async def publish_pending(self) -> int:
        """Publish one batch; return how many events went out."""
        async with self.sessionmaker() as session:
            rows = (await session.execute(_BATCH, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            pipe = self.redis.pipeline(transaction=False)
            for row in rows:
                payload = dict(row.payload)
                created: datetime = row.created_at
                payload.update(id=str(row.event_id), sequence=row.id, time=created.isoformat())
                pipe.xadd(
                    self.settings.stream_prefix + row.stream,
                    {"event": json.dumps(payload, default=str)},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()
            await session.execute(_MARK, {"ids": [row.id for row in rows]})
            await session.commit()
            return len(rows)

    async def run(self) -> None:
        """Wait for the relay lock, then publish whenever events are committed."""
        while True:
            try:
                await self._run_holding_lock()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or Redis away: retry, events stay in outbox
                log.warning("outbox relay interrupted: %s", exc)
                await asyncio.sleep(1.0)

    async def _run_holding_lock(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
        try:
            # Standby until the active relay goes away. Polled, not a blocking
            # pg_advisory_lock: a statement waiting on a lock keeps its snapshot, and that one
            # snapshot, held for the life of the process, stops VACUUM from removing any dead
            # row in the database, so every table the engines update keeps growing.
            while not await self._try_lead(conn):
                await self._standby_pause()
            await conn.add_listener(
                outbox_channel(self.settings.db_schema), lambda *_: self._wake.set()
            )
            while True:
                self._wake.clear()
                # A full batch means more may be waiting: keep going until a short one.
                published = self.batch_size
                while published >= self.batch_size:
                    published = await self.publish_pending()
                if conn.is_closed():
                    raise ConnectionError("relay lock connection lost")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _try_lead(self, conn: asyncpg.Connection) -> bool:
        """Become the active relay if none is; held until `conn` closes."""
        return bool(
            await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                RELAY_LOCK_ID,
                self.settings.db_schema or "public",
            )
        )

    async def _standby_pause(self) -> None:
        await asyncio.sleep(self.poll_interval_s)
