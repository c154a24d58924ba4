"""Writing events into the outbox inside the caller's transaction.

Stream names: one Redis stream per event type (optionally prefixed for isolation), the types
being `shared.state.machine.EVENT_TYPES` plus ingestion.agent.health.
Every event carries id, type, schema_version, run_id, time and `sequence` (the outbox id,
increasing in commit order per run) so consumers can order across streams.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

SCHEMA_VERSION = 1

# One round trip: insert the batch in order and notify the relay (a data-modifying CTE runs
# even though the outer query does not read it).
_INSERT = text(
    """
WITH inserted AS (
    INSERT INTO event_outbox (event_id, stream, event_type, run_id, payload)
    SELECT e.event_id, e.stream, e.stream, e.run_id, e.payload
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:streams AS text[]), CAST(:run_ids AS uuid[]),
                CAST(:payloads AS jsonb[])) WITH ORDINALITY
         AS e(event_id, stream, run_id, payload, position)
    ORDER BY e.position
    RETURNING 1
)
SELECT pg_notify(:relay_channel, ''),
       CASE WHEN :wake_engines THEN pg_notify(:engine_channel, :wake_payload) END
"""
)


@dataclass
class Event:
    type: str
    run_id: uuid.UUID | None = None
    data: dict[str, Any] = field(default_factory=dict)


def wakeup_channel(schema: str | None) -> str:
    """The LISTEN/NOTIFY channel that tells engines there is work (per schema)."""
    return f"ingestion_wakeup_{schema or 'public'}"


def outbox_channel(schema: str | None) -> str:
    """The channel that tells the relay there are events to publish."""
    return f"ingestion_outbox_{schema or 'public'}"


async def emit(
    session: AsyncSession,
    events: list[Event],
    *,
    schema: str | None = None,
    wake: str | None = None,
) -> None:
    """Add events to the outbox; they commit (or roll back) with the caller's transaction.

    `wake` also notifies the engines in the same round trip: "runs" (a run may be started),
    "steps" (steps became ready), "stop" (a run was cancelled: stop its steps) or one
    replica's id (steps ready for it alone).
    """
    if not events and wake is None:
        return
    payloads = []
    for event in events:
        payload = {
            "type": event.type,
            "schema_version": SCHEMA_VERSION,
            "run_id": str(event.run_id) if event.run_id else None,
            **event.data,
        }
        payloads.append(json.dumps(payload, default=str))
    await session.execute(
        _INSERT,
        {
            "event_ids": [uuid.uuid4() for _ in events],
            "streams": [event.type for event in events],
            "run_ids": [event.run_id for event in events],
            "payloads": payloads,
            "relay_channel": outbox_channel(schema),
            "engine_channel": wakeup_channel(schema),
            "wake_engines": wake is not None,
            "wake_payload": wake or "",
        },
    )
