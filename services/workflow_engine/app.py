"""The workflow engine app: `uvicorn services.workflow_engine.app:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from services.workflow_engine.runs.router import router as runs_router
from services.workflow_engine.settings import EngineSettings
from services.workflow_engine.worker import Executor
from shared.agent_client import AgentClient
from shared.agent_registry import AgentDirectory
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import register_exception_handlers
from shared.events.relay import OutboxRelay
from shared.health import mount_health
from shared.limits import limit_body
from shared.live_log import LogLevelFollower
from shared.logs import configure_logging, secret_values
from shared.metrics import create_metrics, mount_metrics
from shared.tasks import background
from shared.tracing import FASTAPI_TELEMETRY, configure_tracing

REGISTERED_AGENTS_REFRESH_S = 10.0


def create_app(settings: EngineSettings | None = None) -> FastAPI:
    """Build the engine app; clients and worker loops live in the lifespan."""
    settings = settings or EngineSettings()
    configure_logging("workflow-engine", settings.log_level, secrets=secret_values(settings))
    configure_tracing("workflow-engine")
    metrics = create_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, pool_size=20, pre_ping=False)
        sessionmaker = create_sessionmaker(engine)
        redis = aioredis.from_url(settings.redis_url)
        client = AgentClient(
            settings.agent_urls,
            settings.service_token.get_secret_value(),
            max_connections=settings.concurrency * 2,
            # Registered agents: a new one is found at its first call (a miss re-reads the
            # table), a changed or removed one within REGISTERED_AGENTS_REFRESH_S.
            directory=AgentDirectory(sessionmaker, refresh_s=REGISTERED_AGENTS_REFRESH_S),
        )
        app.state.sessionmaker = sessionmaker
        app.state.redis = redis
        executor = Executor(settings, sessionmaker, client, metrics)
        app.state.executor = executor
        relay = OutboxRelay(settings, redis)
        # Off the hot path: the retry model is loaded here and refreshed in the background.
        await executor.advisor.start()
        follower = LogLevelFollower(
            sessionmaker, settings.log_level, interval_s=settings.live_settings_poll_s
        )
        app.state.log_level = follower
        loops = []
        if settings.start_loops:
            await follower.check_quietly()  # at the platform's level from the first step
            loops = [relay.run(), follower.run()]
        async with background(*loops, stoppers=[relay.stop]):
            if settings.start_loops:
                executor.start()
            try:
                yield
            finally:
                await executor.stop()
                await executor.advisor.stop()
        await client.aclose()
        await redis.aclose()
        await engine.dispose()

    app = FastAPI(title="workflow-engine", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY)
    app.state.settings = settings
    register_exception_handlers(app)
    limit_body(app, settings)
    mount_metrics(app, metrics.registry)
    app.include_router(runs_router)

    mount_health(app, "workflow-engine", worker_id=settings.worker_id)

    @app.get("/models")
    async def models() -> dict[str, object]:
        """The retry_strategy decider adaptive steps use (version, source, any problem)."""
        executor = getattr(app.state, "executor", None)
        return {"retry_strategy": executor.advisor.health() if executor else None}

    return app
