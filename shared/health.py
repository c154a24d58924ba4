"""GET /health, one implementation for every service: named checks, each with a state and what
it shows, and the answer they add up to.

A check's state is "ok", "degraded" (the service works, less well: Redis away delays events, a
model fell back to its baseline) or "unhealthy" (it cannot do its work: its database is down).
The answer is `unhealthy` with a 503 when any check is, else `degraded` when any is, else
`healthy`; a probe restarts only what is unhealthy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

State = Literal["ok", "degraded", "unhealthy"]
Verdict = tuple[State, Any]  # the state, and what /health shows under the check's name
Checks = Callable[[Request], Awaitable[dict[str, Verdict]]]


def overall(states: list[State]) -> str:
    """The service's status from its checks' states."""
    if "unhealthy" in states:
        return "unhealthy"
    return "degraded" if "degraded" in states else "healthy"


def serve_health(
    app: FastAPI, about: dict[str, Any], checks: Checks, *, in_schema: bool = False
) -> None:
    """Serve GET /health: `{"status", **about, "checks"}`, 503 when unhealthy."""

    @app.get(
        "/health",
        include_in_schema=in_schema,
        responses={503: {"description": "unhealthy: the database is down"}},
    )
    async def health(request: Request) -> JSONResponse:
        verdicts = await checks(request)
        status = overall([state for state, _ in verdicts.values()])
        return JSONResponse(
            {"status": status, **about, "checks": {k: v for k, (_, v) in verdicts.items()}},
            status_code=503 if status == "unhealthy" else 200,
        )


async def database_verdict(connect: Callable[[], Any]) -> Verdict:
    """`SELECT 1` over `connect()` (a sessionmaker or an engine's `connect`): down is unhealthy."""
    try:
        async with connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # reported, not raised: /health must answer
        return "unhealthy", f"down: {type(exc).__name__}"
    return "ok", "ok"


async def redis_verdict(redis: Any) -> Verdict:
    """PING: Redis down only delays events (they wait in the outbox), so it is degraded."""
    try:
        await redis.ping()
    except Exception as exc:
        return "degraded", f"down: {type(exc).__name__}"
    return "ok", "ok"


PartChecks = Callable[[FastAPI], Awaitable[dict[str, str]]]


def mount_health(
    app: FastAPI, service: str, *, parts: PartChecks | None = None, **extra: Any
) -> None:
    """/health of a service on the platform's PostgreSQL and Redis (controller and engine).

    `parts` adds checks of other services this one relies on; any not "ok" makes it degraded.
    """

    async def checks(_: Request) -> dict[str, Verdict]:
        verdicts = {
            "database": await database_verdict(app.state.sessionmaker),
            "redis": await redis_verdict(app.state.redis),
        }
        for name, shown in (await parts(app) if parts is not None else {}).items():
            verdicts[name] = ("ok" if shown == "ok" else "degraded", shown)
        return verdicts

    serve_health(app, {"service": service, **extra}, checks)
