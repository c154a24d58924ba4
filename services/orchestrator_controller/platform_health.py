"""What the controller's /health adds to its own database and Redis: the parts of the platform
a run needs beyond the controller. An engine that is down or a relay nobody runs leaves the
controller able to accept runs, so these make it `degraded` (200, with the part named), not
`unhealthy`: a liveness probe must not restart the controller for another service's outage."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from shared.events.relay import RELAY_LOCK_ID, RELAY_STATE


async def engine_check(app: FastAPI) -> str:
    settings = app.state.settings
    try:
        response = await app.state.http.get(
            f"{settings.engine_url}/health", timeout=settings.live.current.health_timeout_s
        )
    except httpx.HTTPError as exc:
        return f"down: {settings.engine_url} unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"down: {settings.engine_url}/health answered {response.status_code}"
    return "ok"


async def relay_check(app: FastAPI) -> str:
    settings = app.state.settings
    try:
        async with app.state.sessionmaker() as session:
            state = (
                await session.execute(
                    text(RELAY_STATE),
                    {"lock_id": RELAY_LOCK_ID, "schema": settings.db_schema or "public"},
                )
            ).one()
    except Exception as exc:  # the database check names the cause
        return f"unknown: {type(exc).__name__}"
    if not state.active:
        return "down: no process holds the outbox relay lock; events wait in the outbox"
    if state.lag_s is not None and state.lag_s > settings.live.current.relay_lag_warn_s:
        return f"lagging: the oldest unpublished event is {state.lag_s:.0f} s old"
    return "ok"


async def platform_checks(app: FastAPI) -> dict[str, str]:
    return {"engine": await engine_check(app), "relay": await relay_check(app)}
