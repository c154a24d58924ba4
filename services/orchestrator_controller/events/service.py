"""Reading events: a run's past from the outbox, the live tail from the Redis streams.

Every event carries `sequence` (the outbox id, increasing in commit order), which orders
events across streams and lets a feed drop what it already sent: the replay reads the
outbox, the live part reads Redis from the ids the streams had *before* the replay, so an
event committed in between is seen twice at worst, never missed, and the repeat is dropped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.state.machine import EVENT_TYPES, RUN_EVENT, TERMINAL_RUN

STREAMS = sorted({*EVENT_TYPES, "ingestion.agent.health"})
TERMINAL_EVENTS = frozenset(RUN_EVENT[status] for status in TERMINAL_RUN if status in RUN_EVENT)
REPLAY_LIMIT = 5000

# The same JSON the relay publishes, so a replayed event and a live one look alike.
_EVENT_JSON = """
(payload || jsonb_build_object(
    'id', event_id::text,
    'sequence', id,
    'time', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
))::text AS event
"""
_RUN_EVENTS = text(
    f"SELECT {_EVENT_JSON} FROM event_outbox WHERE run_id = :run_id AND id > :after "
    "ORDER BY id LIMIT :limit"
)
_EVENTS_AFTER = text(
    f"SELECT {_EVENT_JSON} FROM event_outbox WHERE id > :after ORDER BY id LIMIT :limit"
)
_RECENT_EVENTS = text(
    f"SELECT event FROM (SELECT id, {_EVENT_JSON} FROM event_outbox ORDER BY id DESC "
    "LIMIT :limit) recent ORDER BY id"
)


async def run_events(
    session: AsyncSession, *, run_id: uuid.UUID, after: int = 0
) -> list[dict[str, Any]]:
    """A run's committed events after `after` (a sequence), oldest first."""
    rows = await session.execute(
        _RUN_EVENTS, {"run_id": run_id, "after": after, "limit": REPLAY_LIMIT}
    )
    return [json.loads(row.event) for row in rows]


async def events_after(session: AsyncSession, *, after: int) -> list[dict[str, Any]]:
    """Every committed event after `after` (a sequence), oldest first (a reconnect's gap)."""
    rows = await session.execute(_EVENTS_AFTER, {"after": after, "limit": REPLAY_LIMIT})
    return [json.loads(row.event) for row in rows]


async def recent_events(session: AsyncSession, *, limit: int) -> list[dict[str, Any]]:
    """The last `limit` committed events, oldest first (a feed that does not follow)."""
    rows = await session.execute(_RECENT_EVENTS, {"limit": limit})
    return [json.loads(row.event) for row in rows]


async def stream_positions(redis: aioredis.Redis, prefix: str) -> dict[str, str]:
    """The last entry id of each stream now ("0-0" for an empty one): where a tail starts."""
    pipe = redis.pipeline(transaction=False)
    for stream in STREAMS:
        pipe.xrevrange(prefix + stream, count=1)
    replies = await pipe.execute()
    positions = {}
    for stream, reply in zip(STREAMS, replies, strict=True):
        last = reply[0][0] if reply else b"0-0"
        positions[prefix + stream] = last.decode() if isinstance(last, bytes) else str(last)
    return positions


async def tail(
    redis: aioredis.Redis, positions: dict[str, str], *, block_ms: int = 5000
) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield each batch of new events in sequence order; an empty batch when a block times out.

    Plain XREAD rather than a consumer group: every watcher must see every event, and a
    group hands each entry to one consumer only.
    """
    positions = dict(positions)
    while True:
        replies: Any = await redis.xread(positions, count=500, block=block_ms)  # type: ignore[arg-type]
        batch: list[dict[str, Any]] = []
        for stream, messages in replies or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            for message_id, fields in messages:
                positions[name] = (
                    message_id.decode() if isinstance(message_id, bytes) else message_id
                )
                raw = fields.get(b"event") or fields.get("event")
                if raw is not None:
                    batch.append(json.loads(raw))
        batch.sort(key=lambda e: e.get("sequence", 0))
        yield batch


def sse(event: dict[str, Any]) -> str:
    """One event in the text/event-stream format; `id` is the sequence (for Last-Event-ID)."""
    return (
        f"id: {event.get('sequence', '')}\n"
        f"event: {event.get('type', 'message')}\n"
        f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
    )
