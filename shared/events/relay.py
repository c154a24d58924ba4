"""The outbox relay: publishes committed events to Redis Streams in outbox order.

One relay is active at a time across all processes (a PostgreSQL advisory lock), which keeps
the per-run order of events. When Redis is down the rows stay unpublished and go out later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import redis.asyncio as aioredis

from shared.db.session import asyncpg_dsn
from shared.events.outbox import outbox_channel
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

RELAY_LOCK_ID = 72002
STREAM_MAXLEN = 100_000

# PostgreSQL writes each event's JSON: the relay passes the text on to Redis untouched, so its
# cost per event stays small in whichever process (an engine, say) holds the relay lock.
_BATCH = """
SELECT id, stream,
       (payload || jsonb_build_object(
           'id', event_id::text,
           'sequence', id,
           'time', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
       ))::text AS event
FROM event_outbox WHERE published_at IS NULL ORDER BY id LIMIT $1
"""
_MARK = "UPDATE event_outbox SET published_at = now() WHERE id = ANY($1::bigint[])"

# Whether some process holds the relay lock of `schema` (the two-int4 advisory lock of
# `_try_lead`: pg_locks shows the second key as an unsigned oid), and how old the oldest event
# still waiting for Redis is.
RELAY_STATE = """
SELECT EXISTS (
           SELECT 1 FROM pg_locks
           WHERE locktype = 'advisory' AND granted AND classid::bigint = :lock_id
             AND objsubid = 2
             AND objid::bigint = (hashtext(:schema)::bigint + 4294967296) % 4294967296
       ) AS active,
       (SELECT extract(epoch FROM now() - created_at) FROM event_outbox
        WHERE published_at IS NULL ORDER BY id LIMIT 1) AS lag_s
"""


class OutboxRelay:
    """Moves outbox rows to Redis Streams; run `run()` as a background task."""

    def __init__(
        self,
        settings: CommonSettings,
        redis: aioredis.Redis,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False

    def stop(self) -> None:
        """Ask `run()` to return once the batch in hand is published and marked.

        Cooperative, ahead of any cancel: a cancel that lands inside a database or Redis call
        can leave the task stuck in the driver, holding its process's exit for seconds.
        """
        self._stopping = True
        self._wake.set()

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        """Publish one batch; return how many events went out.

        Published first, marked after: a relay that dies in between publishes the batch again
        (at least once; consumers drop repeats by the event's `id`).
        """
        rows = await conn.fetch(_BATCH, self.batch_size)
        if not rows:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for row in rows:
            pipe.xadd(
                self.settings.stream_prefix + row["stream"],
                {"event": row["event"]},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
        await pipe.execute()
        await conn.execute(_MARK, [row["id"] for row in rows])
        return len(rows)

    async def run(self) -> None:
        """Wait for the relay lock, then publish whenever events are committed."""
        while not self._stopping:
            try:
                await self._run_holding_lock()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or Redis away: retry, events stay in outbox
                log.warning("outbox relay interrupted: %s", exc)
                await self._pause(1.0)

    async def _run_holding_lock(self) -> None:
        schema = self.settings.db_schema
        conn = await asyncpg.connect(
            asyncpg_dsn(self.settings.database_url),
            server_settings={"search_path": schema} if schema else None,
        )
        try:
            # Standby until the active relay goes away. Polled, not a blocking
            # pg_advisory_lock: a statement waiting on a lock keeps its snapshot, and that one
            # snapshot, held for the life of the process, stops VACUUM from removing any dead
            # row in the database, so every table the engines update keeps growing.
            while not await self._try_lead(conn):
                if self._stopping:
                    return
                await self._pause(self.poll_interval_s)
            await conn.add_listener(
                outbox_channel(self.settings.db_schema), lambda *_: self._wake.set()
            )
            while not self._stopping:
                self._wake.clear()
                # A full batch means more may be waiting: keep going until a short one.
                published = self.batch_size
                while published >= self.batch_size and not self._stopping:
                    published = await self.publish_pending(conn)
                if conn.is_closed():
                    raise ConnectionError("relay lock connection lost")
                await self._pause(self.poll_interval_s)
        finally:
            # terminate, not close: close waits on the server, and a connection interrupted
            # mid-query may never answer; the lock goes with the session either way.
            conn.terminate()

    async def _pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, ending early when an event is committed or `stop()` is called."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _try_lead(self, conn: asyncpg.Connection) -> bool:
        """Become the active relay if none is; held until `conn` closes."""
        return bool(
            await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                RELAY_LOCK_ID,
                self.settings.db_schema or "public",
            )
        )
