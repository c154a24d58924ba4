"""The app factory every agent uses: /health, /metrics, POST /api/v1/{action}."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.trace import StatusCode
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from agents.base.actions import (
    ActionRegistry,
    ActionResult,
    AgentError,
    Handler,
    NoopBody,
    noop,
)
from agents.base.context import ActionContext
from agents.base.ledger import Claim, Ledger, request_hash
from agents.base.liveness import Heartbeat
from agents.base.openapi import action_request_body, action_traits
from agents.base.openapi import install as install_openapi
from agents.base.security import pinned_client
from agents.base.settings import AgentSettings
from ml.bindings import database_binding
from ml.slot import ModelSlot
from shared.auth import require_token
from shared.db.errors import is_unavailable, refused_value
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import NotFound, ValidationFailed, errors, register_exception_handlers
from shared.health import State, Verdict, database_verdict, serve_health
from shared.limits import limit_body
from shared.live_log import LogLevelFollower
from shared.logs import RequestLog, configure_logging, secret_values
from shared.metrics import create_agent_metrics, mount_metrics
from shared.spec.catalog import AGENT_ACTIONS
from shared.tasks import background
from shared.tracing import FASTAPI_TELEMETRY, configure_tracing, server_span
from shared.tracing import enabled as tracing_enabled

# A health check returns (status, detail); status is "ok", "degraded" or "down".
HealthCheck = Callable[[ActionContext], Awaitable[tuple[str, Any]]]
_STATES: dict[str, State] = {"ok": "ok", "degraded": "degraded"}  # anything else: unhealthy
log = logging.getLogger(__name__)


def create_agent_app(
    registry: ActionRegistry,
    settings: AgentSettings | None = None,
    *,
    health_checks: dict[str, HealthCheck] | None = None,
    models: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the FastAPI app of one agent from its registered actions.

    `models` maps a registered model's name to the baseline the agent falls back to; each
    becomes a `ModelSlot` loading the registry's champion (see ml/slot.py).
    """
    settings = settings or AgentSettings()
    # The credentials a spec may name are the agent's secrets too: masked in every line.
    credentials = [os.environ.get(name, "") for name in settings.credentials]
    configure_logging(
        registry.agent, settings.log_level, secrets=[*secret_values(settings), *credentials]
    )
    configure_tracing(registry.agent)
    slots = {
        name: ModelSlot(
            name,
            baseline,
            tracking_uri=settings.mlflow_tracking_uri,
            refresh_s=settings.model_refresh_s,
            # The app's sessionmaker exists once its lifespan runs, before any slot starts.
            binding=database_binding(lambda: app.state.sessionmaker, name),
        )
        for name, baseline in (models or {}).items()
    }
    registry.actions.setdefault("noop", _noop_action(registry))
    # An external agent built on this base (agents/base_data_quality) is not in the catalog:
    # the controller reads its actions from GET /api/v1/actions when it is registered.
    expected = AGENT_ACTIONS.get(registry.agent)
    if expected is not None and set(registry.actions) != expected:
        raise RuntimeError(
            f"{registry.agent} serves {sorted(registry.actions)} but the catalog "
            f"(shared/spec/catalog.py) says {sorted(expected)}"
        )
    observed = create_agent_metrics(registry.agent)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, pool_size=5)
        target = engine
        if settings.target_database_url is not None:
            target = create_engine(
                settings.model_copy(update={"database_url": settings.target_database_url}),
                pool_size=2,
            )
        async with pinned_client(timeout=30.0, follow_redirects=False) as http:
            app.state.engine = engine
            app.state.target_engine = target
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.http = http
            heartbeat = Heartbeat(registry.agent, app.state.sessionmaker, settings.heartbeat_s)
            await heartbeat.start()
            app.state.ledger = Ledger(
                registry.agent,
                app.state.sessionmaker,
                settings.ledger_claim_s,
                instance_id=heartbeat.instance_id,
                dead_after_s=settings.dead_after_s,
            )
            for slot in slots.values():
                await slot.start()
            follower = LogLevelFollower(
                app.state.sessionmaker, settings.log_level, interval_s=settings.live_settings_poll_s
            )
            app.state.log_level = follower
            await follower.check_quietly()  # at the platform's level from the first request
            try:
                async with background(follower.run()):
                    yield
            finally:
                for slot in slots.values():
                    await slot.stop()
                await heartbeat.stop()
        await engine.dispose()
        if target is not engine:
            await target.dispose()

    app = FastAPI(title=registry.agent, lifespan=lifespan, telemetry=FASTAPI_TELEMETRY)
    register_exception_handlers(app)
    limit_body(app, settings)
    # Outermost, so a request refused by the body cap has its line too.
    app.add_middleware(RequestLog, logger="http.request", bind_headers=True)
    mount_metrics(app, observed.registry)
    app.state.settings = settings
    app.state.registry = registry
    app.state.models = slots

    def context(request: Request) -> ActionContext:
        run_id, step_id = _id_header(request, "x-run-id"), _id_header(request, "x-step-id")
        return ActionContext(
            agent=registry.agent,
            settings=settings,
            http=app.state.http,
            db_engine=app.state.engine,
            target_engine=app.state.target_engine,
            sessionmaker=app.state.sessionmaker,
            idempotency_key=request.headers.get("idempotency-key"),
            run_id=run_id,
            step_id=step_id,
            trace_id=request.headers.get("x-trace-id"),
            models=slots,
        )

    async def health_checks_of(request: Request) -> dict[str, Verdict]:
        verdicts = {"database": await database_verdict(app.state.engine.connect)}
        for name, slot in slots.items():
            state, detail = slot.health()
            shown = detail if state == "ok" else {"status": state, **detail}
            verdicts[f"model:{name}"] = ("ok" if state == "ok" else "degraded", shown)
        for name, check in (health_checks or {}).items():
            state, detail = await check(context(request))
            shown = detail if state == "ok" else {"status": state, "detail": detail}
            verdicts[name] = (_STATES.get(state, "unhealthy"), shown)
        return verdicts

    about = {"agent": registry.agent, "actions": sorted(registry.actions)}
    serve_health(app, about, health_checks_of, in_schema=True)

    @app.get("/api/v1/actions", responses=errors(401))
    async def list_actions(request: Request) -> dict[str, Any]:
        require_token(request, settings.service_tokens())
        listing: dict[str, Any] = {}
        for name, action in sorted(registry.actions.items()):
            listing[name] = {
                "description": action.description,
                "body": action.body.model_json_schema(),
            }
            if (result := action.result) is not None:  # a step's output: what templates may read
                listing[name]["result"] = result.model_json_schema(by_alias=True)
        return listing

    async def traced(action: str, request: Request) -> JSONResponse:
        if not tracing_enabled():
            return await act(action, request)
        # A server span per call, a child of the engine's step span (its `traceparent`).
        attributes = {"agent": registry.agent, "action": action}
        for header, name in (("x-run-id", "run_id"), ("x-step-id", "step_id")):
            if value := request.headers.get(header):
                attributes[name] = value[:64]
        with server_span(
            request.headers, f"{registry.agent} {action}", attributes=attributes
        ) as span:
            response = await act(action, request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(StatusCode.ERROR)
            return response

    # One documented operation per action, its body the action's own model (see
    # agents/base/openapi.py); the catch-all after them only answers an unknown action's 404.
    for name, action in sorted(registry.actions.items()):
        app.add_api_route(
            f"/api/v1/{name}",
            _action_endpoint(name, traced),
            methods=["POST"],
            name=f"action_{name}",
            summary=action.description or name,
            responses=errors(401, 409, 413, 422, 503),
            openapi_extra={
                **action_request_body(action.body, action.example),
                **action_traits(action),
            },
        )

    @app.post("/api/v1/{action}", include_in_schema=False)
    async def unknown_action(request: Request, action: str) -> JSONResponse:
        return await traced(action, request)

    async def act(action: str, request: Request) -> JSONResponse:
        require_token(request, settings.service_tokens())
        spec = registry.actions.get(action)
        if spec is None:
            raise NotFound(
                f"{registry.agent} has no action {action!r}; "
                f"actions: {', '.join(sorted(registry.actions))}",
                code="unknown_action",
            )
        try:
            raw = await request.json()
        except ValueError as exc:
            raise ValidationFailed("request body must be a JSON object") from exc
        try:
            body = spec.body.model_validate(raw)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            # Each field with its reason: a model-wide rule has no field, only its message.
            fields = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
            raise ValidationFailed(f"invalid body for {action}: {fields}", details=details) from exc
        ctx = context(request)
        ledger: Ledger = app.state.ledger
        key = ctx.idempotency_key if not spec.idempotent_by_nature else None
        claim: Claim | None = None
        if key:
            stored = await ledger.begin(key, action, request_hash(action, raw))
            if isinstance(stored, Claim):
                claim = stored
            else:
                observed.call(action, "replayed")
                if stored.status == "DONE":
                    return JSONResponse(stored.result, headers={"Idempotent-Replayed": "true"})
                return JSONResponse(
                    stored.error or {"error": "action_failed"},
                    status_code=int((stored.error or {}).get("status", 422)),
                    headers={"Idempotent-Replayed": "true"},
                )
        started = time.perf_counter()
        try:
            result = await _run_handler(spec.handler, body, ctx, action)
        except AgentError as exc:
            observed.call(action, "error")
            observed.failed(action, exc.code)
            if not exc.retryable and _caused_by_database_outage(exc):
                # The database was away (restarting, out of connections): not the request's
                # fault, whatever the action concluded. Another attempt may well succeed.
                exc.retryable, exc.status_code = True, 503
            log.warning(
                "%s failed: %s (%s)",
                action,
                exc.message,
                exc.code,
                extra={"action": action, "error_code": exc.code, "retryable": exc.retryable},
            )
            error = {**exc.to_body(), "status": exc.status_code}
            if claim:
                await ledger.fail(claim, error)
            headers = (
                {"Retry-After": f"{exc.retry_after_s:g}"} if exc.retry_after_s is not None else None
            )
            return JSONResponse(error, status_code=exc.status_code, headers=headers)
        except BaseException:
            # Unexpected crash: leave the key retryable so a later attempt can redo the work.
            observed.call(action, "crash")
            if claim:
                await ledger.fail(claim, {"error": "crash", "retryable": True, "status": 500})
            raise
        finally:
            elapsed = time.perf_counter() - started
            observed.finished(action, elapsed)
        observed.loaded(elapsed, result)
        if claim:
            await ledger.finish(claim, result)
        observed.call(action, "ok")
        return JSONResponse(result)

    install_openapi(app, registry)
    return app


def _action_endpoint(
    name: str, dispatch: Callable[[str, Request], Awaitable[JSONResponse]]
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        return await dispatch(name, request)

    return endpoint


# Run and step ids name folders under DATA_ROOT (runs/<run>/<step>/): letters, digits, '-' and
# '_' only, so a header such as `../datasets` can never point a step's writes elsewhere.
_ID_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _id_header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is not None and not _ID_HEADER.match(value):
        raise ValidationFailed(
            f"{name}: {value[:80]!r} is not an id (letters, digits, '-' and '_', at most 64)",
            code="invalid_header",
        )
    return value


async def _run_handler(
    handler: Handler,
    body: Any,
    ctx: ActionContext,
    action: str,
) -> dict[str, Any]:
    try:
        result = await handler(body, ctx)
        return result.as_output() if isinstance(result, ActionResult) else result
    except AgentError:
        raise
    except Exception as exc:
        # A value the database refuses (a NUL in a string, a number out of range) would be
        # refused again: the request's fault, a 422, not a crash to retry.
        reason = refused_value(exc)
        if reason is None:
            raise
        raise AgentError(
            f"{action}: the database refused a value ({reason})",
            code="value_refused",
        ) from exc


def _caused_by_database_outage(exc: BaseException) -> bool:
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(5):  # a short chain: the action's error wraps the driver's
        if seen is None:
            return False
        # Only the database driver's errors: an OSError could as well be a missing file.
        if isinstance(seen, DBAPIError) and is_unavailable(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _noop_action(registry: ActionRegistry) -> Any:
    from agents.base.actions import Action

    return Action(
        "noop",
        NoopBody,
        noop,
        example={"ping": "throughput-bench"},
        description="do nothing; echo the body",
        idempotent_by_nature=True,
    )
