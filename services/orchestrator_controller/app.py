"""The controller app: `uvicorn services.orchestrator_controller.app:create_app --factory`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI

from services.orchestrator_controller.agent_health.monitor import HealthMonitor
from services.orchestrator_controller.agent_health.router import router as health_router
from services.orchestrator_controller.agents.router import router as agents_router
from services.orchestrator_controller.datasets.router import router as datasets_router
from services.orchestrator_controller.definitions import service as definitions
from services.orchestrator_controller.definitions.router import router as definitions_router
from services.orchestrator_controller.events.router import router as events_router
from services.orchestrator_controller.handoff import Handoff
from services.orchestrator_controller.lineage.consumer import LineageLoop
from services.orchestrator_controller.live.router import router as config_router
from services.orchestrator_controller.logs.router import router as logs_router
from services.orchestrator_controller.models.router import router as models_router
from services.orchestrator_controller.openapi import install as install_openapi
from services.orchestrator_controller.platform_health import platform_checks
from services.orchestrator_controller.policies.loop import AdmissionLoop
from services.orchestrator_controller.policies.router import router as orchestrators_router
from services.orchestrator_controller.policies.service import Policies, utc_now
from services.orchestrator_controller.retention import RetentionLoop
from services.orchestrator_controller.runs.admission import AdmissionQueue
from services.orchestrator_controller.runs.router import router as runs_router
from services.orchestrator_controller.schedules.router import router as schedules_router
from services.orchestrator_controller.schedules.seeds import ensure_seed_schedules
from services.orchestrator_controller.schedules.ticker import Ticker
from services.orchestrator_controller.settings import ControllerSettings
from services.orchestrator_controller.sources.router import router as sources_router
from services.orchestrator_controller.ui.router import mount_ui
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import register_exception_handlers
from shared.events.relay import OutboxRelay
from shared.health import mount_health
from shared.limits import limit_body
from shared.logs import RequestLog, configure_logging, secret_values
from shared.metrics import create_metrics, mount_metrics
from shared.spec.loader import builtin_specs
from shared.tasks import background
from shared.tracing import FASTAPI_TELEMETRY, configure_tracing

log = logging.getLogger(__name__)


async def register_builtins(sessionmaker: object) -> None:
    """Store the workflows shipped in workflows/*.yaml (idempotent across restarts)."""
    async with sessionmaker() as session, session.begin():  # type: ignore[operator]
        for spec in builtin_specs():
            await definitions.register(session, spec=spec, source="builtin", replace=True)


async def create_seed_schedules(sessionmaker: object, clock: object) -> None:
    """Create the seed's four schedules unless they exist (first start only)."""
    async with sessionmaker() as session, session.begin():  # type: ignore[operator]
        await ensure_seed_schedules(session, now=clock())  # type: ignore[operator]


def create_app(settings: ControllerSettings | None = None) -> FastAPI:
    """Build the controller app; clients and background loops live in the lifespan."""
    settings = settings or ControllerSettings()
    configure_logging(
        "orchestrator-controller", settings.log_level, secrets=secret_values(settings)
    )
    configure_tracing("orchestrator-controller")
    metrics = create_metrics()
    # Tests replace app.state.clock to control time; everything reads it through here.
    policies = Policies(settings.orchestrators, clock=lambda: app.state.clock())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        redis = aioredis.from_url(settings.redis_url)
        async with httpx.AsyncClient() as http:
            app.state.sessionmaker = sessionmaker
            app.state.redis = redis
            app.state.http = http
            app.state.handoff = Handoff(settings, sessionmaker, http)
            app.state.admissions = AdmissionQueue(
                sessionmaker, policies, settings.db_schema, metrics
            )
            if settings.register_builtin_workflows:
                await register_builtins(sessionmaker)
            if settings.seed_schedules:
                await create_seed_schedules(sessionmaker, app.state.clock)
            loops = []
            relay = OutboxRelay(settings, redis)
            stoppers = [relay.stop]
            lineage = None
            if settings.start_loops and settings.lineage_enabled:
                lineage = LineageLoop.from_settings(settings, sessionmaker, redis)
                loops.append(lineage.run())
            if settings.start_loops:
                loops += [
                    app.state.handoff.run(),
                    HealthMonitor(settings, sessionmaker, http, metrics).run(),
                    relay.run(),
                    AdmissionLoop(
                        settings, sessionmaker, policies, metrics, app.state.handoff
                    ).run(),
                    RetentionLoop(settings, sessionmaker).run(),
                    Ticker(
                        settings,
                        sessionmaker,
                        policies,
                        clock=lambda: app.state.clock(),
                        handoff=app.state.handoff,
                    ).run(),
                ]
            if settings.kubernetes_watch:
                # Imported here: the kubernetes client is only loaded where it is used.
                from services.orchestrator_controller.kubernetes.bridge import (
                    build_agent_sync,
                    build_config_sync,
                    build_model_sync,
                    build_orchestrator_sync,
                    build_watcher,
                )
                from services.orchestrator_controller.kubernetes.leader import (
                    elector_from_settings,
                    replica_identity,
                )

                watcher = build_watcher(settings, sessionmaker)
                models = build_model_sync(settings, sessionmaker)
                agents = build_agent_sync(settings, sessionmaker, http)
                # Leader only (kubernetes/leader.py): these write to the Kubernetes API (status
                # subresources) and to the shared database (definitions, model bindings, agent
                # registrations); run by every replica they would race each other. Each is a
                # function: a replica that loses and regains the Lease starts it anew.
                leader_only = [watcher.run, watcher.run_status_sync, models.run, agents.run]
                identity = replica_identity(settings.pod_name)
                leading = metrics.controller_leader.labels(identity)
                elector = None
                if settings.leader_election:
                    elector = elector_from_settings(
                        settings, identity=identity, on_change=lambda now: leading.set(int(now))
                    )
                    leading.set(0)
                    loops.append(elector.run(leader_only))
                    stoppers.append(elector.stop)
                else:  # a single replica: it does everything
                    leading.set(1)
                    loops += [run() for run in leader_only]
                app.state.elector = elector
                # Every replica: these put resources in force in this process's own memory (its
                # Policies, its live settings), which every replica needs; the leader alone
                # writes their resources' status (is_leader).
                orchestrators = build_orchestrator_sync(
                    settings, policies, is_leader=elector.is_leader if elector else None
                )
                loops += [
                    orchestrators.run(),
                    build_config_sync(
                        settings,
                        is_leader=elector.is_leader if elector else None,
                        sessionmaker=sessionmaker,
                    ).run(),
                ]
            async with background(*loops, stoppers=stoppers):
                yield
                await app.state.admissions.aclose()
                await app.state.handoff.aclose()
            if lineage is not None:
                await lineage.aclose()
        await redis.aclose()
        await engine.dispose()

    # docs_url=None: /docs is served by mount_ui from vendored assets (no CDN).
    app = FastAPI(
        title="orchestrator-controller",
        lifespan=lifespan,
        docs_url=None,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.state.clock = utc_now
    app.state.policies = policies
    register_exception_handlers(app)
    limit_body(app, settings, max_bytes=lambda: settings.live.current.max_body_bytes)
    app.add_middleware(RequestLog, logger="http.request")
    mount_metrics(app, metrics.registry)
    # definitions first: /workflows/definitions must not be taken for a run id
    app.include_router(definitions_router)
    app.include_router(runs_router)
    app.include_router(health_router)
    # after the health routes: /agents/health is not an agent named "health"
    app.include_router(agents_router)
    app.include_router(schedules_router)
    app.include_router(sources_router)
    app.include_router(models_router)
    app.include_router(datasets_router)
    app.include_router(orchestrators_router)
    app.include_router(config_router)
    app.include_router(events_router)
    app.include_router(logs_router)
    mount_ui(app)
    install_openapi(app)

    mount_health(app, "orchestrator-controller", parts=platform_checks)
    return app
