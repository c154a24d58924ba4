"""The controller app: `uvicorn services.orchestrator_controller.app:create_app --factory`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services.orchestrator_controller.agent_health.monitor import HealthMonitor
from services.orchestrator_controller.agent_health.router import router as health_router
from services.orchestrator_controller.definitions import service as definitions
from services.orchestrator_controller.definitions.router import router as definitions_router
from services.orchestrator_controller.handoff import Handoff
from services.orchestrator_controller.runs.router import router as runs_router
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import register_exception_handlers
from shared.events.relay import OutboxRelay
from shared.metrics import create_metrics, mount_metrics
from shared.spec.loader import builtin_specs
from shared.tasks import background

log = logging.getLogger(__name__)


async def register_builtins(sessionmaker: object) -> None:
    """Store the workflows shipped in workflows/*.yaml (idempotent across restarts)."""
    async with sessionmaker() as session, session.begin():  # type: ignore[operator]
        for spec in builtin_specs():
            await definitions.register(session, spec=spec, source="builtin", replace=True)


def create_app(settings: ControllerSettings | None = None) -> FastAPI:
    """Build the controller app; clients and background loops live in the lifespan."""
    settings = settings or ControllerSettings()
    metrics = create_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        redis = aioredis.from_url(settings.redis_url)
        async with httpx.AsyncClient() as http:
            app.state.sessionmaker = sessionmaker
            app.state.redis = redis
            app.state.handoff = Handoff(settings, sessionmaker, http)
            if settings.register_builtin_workflows:
                await register_builtins(sessionmaker)
            loops = []
            if settings.start_loops:
                loops = [
                    app.state.handoff.run(),
                    HealthMonitor(settings, sessionmaker, http, metrics).run(),
                    OutboxRelay(settings, sessionmaker, redis).run(),
                ]
            if settings.kubernetes_watch:
                # Imported here: the kubernetes client is only loaded where it is used.
                from services.orchestrator_controller.kubernetes.bridge import build_watcher

                watcher = build_watcher(settings, sessionmaker)
                loops += [watcher.run(), watcher.run_status_sync()]
            async with background(*loops):
                yield
                await app.state.handoff.aclose()
        await redis.aclose()
        await engine.dispose()

    app = FastAPI(title="orchestrator-controller", lifespan=lifespan)
    app.state.settings = settings
    register_exception_handlers(app)
    mount_metrics(app, metrics.registry)
    # definitions first: /workflows/definitions must not be taken for a run id
    app.include_router(definitions_router)
    app.include_router(runs_router)
    app.include_router(health_router)

    @app.get("/health")
    async def health() -> JSONResponse:
        checks = {}
        try:
            async with app.state.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
        try:
            await app.state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"
        status = (
            "unhealthy"
            if checks["database"] != "ok"
            else ("healthy" if checks["redis"] == "ok" else "degraded")
        )
        return JSONResponse(
            {"status": status, "service": "orchestrator-controller", "checks": checks},
            status_code=503 if status == "unhealthy" else 200,
        )

    return app
