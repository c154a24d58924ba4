"""Where lineage goes: an OpenLineage HTTP endpoint (Marquez), or the Redis stream
`ingestion.lineage` when none is configured, so no event is silently lost."""

from __future__ import annotations

import asyncio
from typing import Protocol

import redis.asyncio as aioredis
import requests
from openlineage.client.event_v2 import RunEvent
from openlineage.client.serde import Serde
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpConfig,
    HttpTransport,
    TokenProvider,
)
from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG

from shared.events.relay import STREAM_MAXLEN

LINEAGE_STREAM = "ingestion.lineage"


class LineageRejected(Exception):
    """The endpoint refused the event itself (a 4xx): sending it again would be refused too."""


class Emitter(Protocol):
    async def emit(self, event: RunEvent) -> None:
        """Deliver one event; raise when it was not delivered."""

    async def aclose(self) -> None:
        """Release the emitter's connections."""


class StreamEmitter:
    """Appends each event's JSON to a Redis stream (field `event`)."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream

    async def emit(self, event: RunEvent) -> None:
        """Add the event to the stream."""
        await self.redis.xadd(
            self.stream, {"event": Serde.to_json(event)}, maxlen=STREAM_MAXLEN, approximate=True
        )

    async def aclose(self) -> None:
        """Nothing to release: the Redis client is the app's."""


class HttpEmitter:
    """POSTs each event to {url}/api/v1/lineage with openlineage-python's HTTP transport."""

    def __init__(self, url: str, *, api_key: str | None, timeout_s: float) -> None:
        auth = ApiKeyTokenProvider({"api_key": api_key}) if api_key else TokenProvider({})
        # Few retries inside one delivery: the loop retries a failed event later anyway.
        retry = {**DEFAULT_RETRY_CONFIG, "total": 2, "read": 2, "connect": 2}
        # The trailing slash keeps a base path: urljoin drops the last segment of one without.
        base = url.rstrip("/") + "/"
        config = HttpConfig(url=base, timeout=timeout_s, auth=auth, retry=retry)
        self.transport = HttpTransport(config)

    async def emit(self, event: RunEvent) -> None:
        """POST the event (the transport is blocking: it runs in a thread)."""
        try:
            await asyncio.to_thread(self.transport.emit, event)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if 400 <= status < 500 and status not in (401, 403, 408, 429):
                raise LineageRejected(f"{status} from the lineage endpoint: {exc}") from exc
            raise

    async def aclose(self) -> None:
        """Close the transport's HTTP session."""
        await asyncio.to_thread(self.transport.close)
