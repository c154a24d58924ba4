"""GET /health for the services that use PostgreSQL and Redis (controller and engine)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text


async def infrastructure_checks(app: FastAPI) -> tuple[str, dict[str, str]]:
    """Check the app's database and Redis; return the overall status and each check."""
    checks: dict[str, str] = {}
    try:
        async with app.state.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # reported, not raised: /health must answer
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        await app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    # Redis down only delays events (they wait in the outbox): degraded, not unhealthy.
    if checks["database"] != "ok":
        return "unhealthy", checks
    return ("healthy" if checks["redis"] == "ok" else "degraded"), checks


PartChecks = Callable[[FastAPI], Awaitable[dict[str, str]]]


def mount_health(
    app: FastAPI, service: str, *, parts: PartChecks | None = None, **extra: Any
) -> None:
    """Serve GET /health: 200 when healthy or degraded, 503 when the database is down.

    `parts` adds checks of other services this one relies on; any not "ok" makes it degraded.
    """

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        status, checks = await infrastructure_checks(app)
        if parts is not None:
            more = await parts(app)
            checks.update(more)
            if status == "healthy" and any(value != "ok" for value in more.values()):
                status = "degraded"
        return JSONResponse(
            {"status": status, "service": service, **extra, "checks": checks},
            status_code=503 if status == "unhealthy" else 200,
        )
