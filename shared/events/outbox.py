"""Writing events into the outbox inside the caller's transaction.

Stream names (one Redis stream per event type, optionally prefixed for isolation):
  ingestion.workflow.{pending,started,completed,failed,cancelled,compensating,compensated,
  compensation_failed}, ingestion.step.{started,succeeded,retrying,failed,timed_out,skipped,
  cancelled,compensated}, ingestion.agent.health.
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

_INSERT = text(
    "INSERT INTO event_outbox (event_id, stream, event_type, run_id, payload) "
    "VALUES (:event_id, :stream, :event_type, :run_id, CAST(:payload AS jsonb))"
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


async def emit(session: AsyncSession, events: list[Event], *, schema: str | None = None) -> None:
    """Add events to the outbox; they commit (or roll back) with the caller's transaction."""
    if not events:
        return
    rows = []
    for event in events:
        payload = {
            "type": event.type,
            "schema_version": SCHEMA_VERSION,
            "run_id": str(event.run_id) if event.run_id else None,
            **event.data,
        }
        rows.append(
            {
                "event_id": uuid.uuid4(),
                "stream": event.type,
                "event_type": event.type,
                "run_id": event.run_id,
                "payload": json.dumps(payload, default=str),
            }
        )
    await session.execute(_INSERT, rows)
    await session.execute(
        text("SELECT pg_notify(:channel, '')"), {"channel": outbox_channel(schema)}
    )
