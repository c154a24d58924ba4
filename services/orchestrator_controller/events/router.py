"""GET /workflows/{id}/events and GET /events: server-sent event feeds (public API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from services.orchestrator_controller.deps import ReadKey
from services.orchestrator_controller.events import service
from services.orchestrator_controller.runs.service import parse_run_id
from shared.db.models import WorkflowRun
from shared.errors import NotFound, errors

router = APIRouter(tags=["events"], responses=errors(401, 403, 422, 503))

# Proxies (nginx) buffer responses unless told not to, which would hold a feed back.
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = ": keepalive\n\n"
# Sequences are the outbox's BIGINT ids: nothing lies beyond this one.
MAX_SEQUENCE = 2**63 - 1


def _after(last_event_id: str | None, after: int) -> int:
    """Where a feed resumes: a reconnecting EventSource sends the last id it saw.

    Only a sequence counts (ASCII digits, within BIGINT); any other value is ignored, as
    before, rather than reaching int() (other scripts' digits) or the query (an overflow).
    """
    raw = (last_event_id or "").strip()
    if raw.isascii() and raw.isdigit() and int(raw) <= MAX_SEQUENCE:
        return max(after, int(raw))
    return after


@router.get(
    "/workflows/{run_id}/events",
    dependencies=[ReadKey],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **errors(404)},
)
async def run_feed(
    run_id: str,
    request: Request,
    follow: Annotated[bool, Query(description="keep the feed open for new events")] = True,
    after: Annotated[
        int, Query(ge=0, le=MAX_SEQUENCE, description="only events after this sequence")
    ] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """A run's events as SSE: its past first, then live until the run ends."""
    parsed = parse_run_id(run_id)
    redis = request.app.state.redis
    prefix = request.app.state.settings.stream_prefix
    # Positions before the replay: nothing committed in between can fall through the gap.
    positions = await service.stream_positions(redis, prefix) if follow else {}
    async with request.app.state.sessionmaker() as session:
        if await session.get(WorkflowRun, parsed) is None:
            raise NotFound(f"no workflow run {run_id}")
        past = await service.run_events(session, run_id=parsed, after=_after(last_event_id, after))

    async def body() -> AsyncIterator[str]:
        seen = max((e["sequence"] for e in past), default=0)
        for event in past:
            yield service.sse(event)
        if not follow or any(e["type"] in service.TERMINAL_EVENTS for e in past):
            return
        async for batch in service.tail(redis, positions):
            if not batch:
                yield KEEPALIVE
            for event in batch:
                if event.get("run_id") != str(parsed) or event.get("sequence", 0) <= seen:
                    continue
                seen = event["sequence"]
                yield service.sse(event)
                if event["type"] in service.TERMINAL_EVENTS:
                    return

    return StreamingResponse(body(), media_type="text/event-stream", headers=_HEADERS)


@router.get(
    "/events",
    dependencies=[ReadKey],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def platform_feed(
    request: Request,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_SEQUENCE, description="replay committed events after this sequence"),
    ] = None,
    run_type: Annotated[
        str | None, Query(alias="type", description="only events whose type starts so")
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    follow: Annotated[
        bool, Query(description="keep the feed open; false: the replay (or the last events) only")
    ] = True,
    last: Annotated[
        int, Query(ge=1, le=service.REPLAY_LIMIT, description="without follow or after: how many")
    ] = 100,
) -> StreamingResponse:
    """Every run's events as SSE, live; `after` (or Last-Event-ID) replays a gap first.

    With `follow=false` the feed ends after the replay: the events after `after`, or the last
    `last` events when no position is given.
    """
    redis = request.app.state.redis
    positions: dict[str, str] = {}
    if follow:
        positions = await service.stream_positions(redis, request.app.state.settings.stream_prefix)
    past: list[dict[str, Any]] = []
    start = _after(last_event_id, after or 0)
    async with request.app.state.sessionmaker() as session:
        if after is not None or start:
            past = await service.events_after(session, after=start)
        elif not follow:
            past = await service.recent_events(session, limit=last)

    def wanted(event: dict[str, Any]) -> bool:
        return run_type is None or str(event.get("type", "")).startswith(run_type)

    async def body() -> AsyncIterator[str]:
        seen = max((e["sequence"] for e in past), default=start)
        for event in past:
            if wanted(event):
                yield service.sse(event)
        if not follow:
            return
        async for batch in service.tail(redis, positions):
            if not batch:
                yield KEEPALIVE
            for event in batch:
                # Agent health events have no outbox sequence; they are never repeats.
                sequence = event.get("sequence")
                if sequence is not None:
                    if sequence <= seen:
                        continue
                    seen = sequence
                if wanted(event):
                    yield service.sse(event)

    return StreamingResponse(body(), media_type="text/event-stream", headers=_HEADERS)
