"""The conformance kit passes on every built-in agent and names the rule another implementation
breaks: a small agent written here on bare FastAPI (nothing of agents/base), conforming unless
told to break one rule."""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
import sys
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agents.base.settings import AgentSettings
from agents.conformance.__main__ import main
from shared.settings import AGENT_NAMES
from tests.conftest import SAMPLES, SERVICE_TOKEN
from tests.serving import serve

# Agents whose every action is idempotent by nature have nothing to replay.
NOTHING_TO_REPLAY = {"data-connector"}


def kit(url: str, *args: str) -> tuple[int, dict[str, str]]:
    """Run the kit in this process; its exit code and each check's printed line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([url, *args])
    lines = out.getvalue().splitlines()[:-1]  # the last line is the summary
    return code, {line.split(" ", 2)[1].rstrip(":"): line for line in lines}


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_every_built_in_agent_conforms(common_env: dict, agent: str) -> None:
    module = importlib.import_module(f"agents.{agent.replace('-', '_')}.app")
    settings = AgentSettings(**common_env, allowed_roots=[str(SAMPLES)])
    with serve(module.create_app(settings), lifespan="on") as url:
        code, lines = kit(url, "--token", SERVICE_TOKEN, "--allow-effects")
    assert code == 0, "\n".join(lines.values())
    assert not [line for line in lines.values() if line.startswith("FAIL")]
    replay = lines["idempotency.replay"]
    if agent in NOTHING_TO_REPLAY:
        assert replay.startswith("SKIP") and "idempotent by nature" in replay
    else:
        assert replay.startswith("PASS") and "409" in replay, replay
    assert lines["openapi.operations"].startswith("PASS")


def test_the_command_line_kit_exits_0_and_skips_effects_unless_allowed(common_env: dict) -> None:
    from agents.data_transformer.app import create_app

    with serve(create_app(AgentSettings(**common_env)), lifespan="on") as url:
        done = subprocess.run(
            [sys.executable, "-m", "agents.conformance", url, "--token", SERVICE_TOKEN],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS health: data-transformer is healthy" in done.stdout
    # Without --allow-effects the kit calls noop only: transform is not run to test its replay.
    assert "SKIP idempotency.replay: transform may have effects" in done.stdout


TOKEN = "other-agent-token"
BREAKS = {
    None: set(),
    "health_shape": {"health"},
    "open_listing": {"actions.auth"},
    "any_token": {"actions.auth", "auth.wrong_token"},
    "framework_404": {"errors.unknown_action"},
    "crash_on_bad_body": {"errors.bad_body[count]"},
    "no_replay": {"idempotency.replay"},
    "reuse_runs_again": {"idempotency.replay"},
    "undocumented_action": {"openapi.operations"},
}


def other_agent(broken: str | None) -> FastAPI:
    """An agent written from docs/agent-protocol.md alone, breaking the rule `broken`."""
    app = FastAPI(openapi_url=None)
    ledger: dict[str, tuple[str, int, dict[str, Any]]] = {}
    counter = {"n": 0}

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": code, "message": message, "retryable": False}, status)

    def authorized(request: Request) -> bool:
        if broken == "any_token":
            return "authorization" in request.headers
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    @app.get("/health")
    async def health() -> Any:
        if broken == "health_shape":
            return {"ok": True}
        return {"status": "healthy", "agent": "other", "actions": ["count", "noop"], "checks": {}}

    bodies = {
        "count": {
            "type": "object",
            "properties": {"by": {"type": "integer"}, "note": {"type": "string", "default": ""}},
            "required": ["by"],
        },
        "noop": {"type": "object"},
    }

    @app.get("/api/v1/actions")
    async def actions(request: Request) -> Any:
        if broken not in ("open_listing",) and not authorized(request):
            return error(401, "unauthorized", "a service token is required")
        return {name: {"description": name, "body": body} for name, body in bodies.items()}

    @app.get("/openapi.json")
    async def openapi() -> Any:
        documented = ["noop"] if broken == "undocumented_action" else list(bodies)
        paths = {
            f"/api/v1/{name}": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": bodies[name],
                                "example": {"by": 2} if name == "count" else {},
                            }
                        }
                    },
                    "x-agent-action": {
                        "read_only": name == "noop",
                        "idempotency": "by_nature" if name == "noop" else "ledger",
                    },
                }
            }
            for name in documented
        }
        return {"openapi": "3.1.0", "info": {"title": "other", "version": "1"}, "paths": paths}

    @app.post("/api/v1/{action}")
    async def act(action: str, request: Request) -> Any:
        if not authorized(request):
            return error(401, "unauthorized", "a service token is required")
        if action not in bodies:
            if broken == "framework_404":
                return JSONResponse({"detail": "Not Found"}, 404)
            return error(404, "unknown_action", f"no action {action!r}")
        run_id = request.headers.get("x-run-id")
        if run_id is not None and not run_id.replace("-", "").replace("_", "").isalnum():
            return error(422, "invalid_header", "x-run-id is not an id")
        try:
            body = await request.json()
        except ValueError:
            return error(422, "validation_error", "the body is not JSON")
        if not isinstance(body, dict):
            if broken == "crash_on_bad_body" and action == "count":
                return JSONResponse({"oops": True}, 500)
            return error(422, "validation_error", "the body must be an object")
        if action == "noop":
            return {"echo": body}
        key = request.headers.get("idempotency-key")
        fingerprint = repr(sorted(body.items()))
        if key and key in ledger and broken != "no_replay":
            stored_print, status, stored = ledger[key]
            if stored_print != fingerprint and broken != "reuse_runs_again":
                return error(409, "idempotency_key_reused", "the key names another request")
            if stored_print == fingerprint:
                return JSONResponse(stored, status, headers={"Idempotent-Replayed": "true"})
        counter["n"] += int(body.get("by", 1))
        result = {"total": counter["n"]}
        if key:
            ledger[key] = (fingerprint, 200, result)
        return result

    return app


@pytest.mark.parametrize("broken", list(BREAKS), ids=lambda b: b or "conforming")
def test_another_implementation_fails_by_the_rule_it_breaks(broken: str | None) -> None:
    with serve(other_agent(broken)) as url:
        code, lines = kit(url, "--token", TOKEN, "--allow-effects")
    failed = {check for check, line in lines.items() if line.startswith("FAIL")}
    assert failed == BREAKS[broken], "\n".join(lines.values())
    assert code == (1 if failed else 0)
