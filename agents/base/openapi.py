"""The agent's OpenAPI document: each action's body model under components/schemas, referenced
by that action's operation, so clients and fuzzers see what every `POST /api/v1/{name}` takes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from agents.base.actions import Action, ActionRegistry

_REF = "#/components/schemas/{model}"


def action_request_body(body: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """The `openapi_extra` of an action's route: its JSON body, the model's schema by reference,
    with the action's example.

    The route reads the body itself (the ledger hashes the raw request), so FastAPI does not
    derive this from a parameter."""
    schema = {"$ref": _REF.format(model=body.__name__)}
    media = {"schema": schema, "example": example}
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


def action_traits(action: Action) -> dict[str, Any]:
    """The `x-agent-action` extension of an action's operation: what a caller (the conformance
    kit, docs/agent-protocol.md) may assume about calling it.

    `read_only`: the action changes nothing, so calling it to probe the agent is harmless.
    `idempotency`: `ledger` (a repeated Idempotency-Key replays the stored outcome) or
    `by_nature` (the key is ignored: the action is run again, which is harmless)."""
    return {
        "x-agent-action": {
            "read_only": action.idempotent_by_nature,
            "idempotency": "by_nature" if action.idempotent_by_nature else "ledger",
        }
    }


def action_schemas(registry: ActionRegistry) -> dict[str, Any]:
    """Every action body's schema and the schemas it refers to, by model name."""
    schemas: dict[str, Any] = {}
    for action in registry.actions.values():
        document = action.body.model_json_schema(ref_template=_REF)
        nested = document.pop("$defs", {})
        for name, schema in {**nested, action.body.__name__: document}.items():
            if schemas.setdefault(name, schema) != schema:
                raise RuntimeError(
                    f"{registry.agent}: two different body models are named {name!r}; "
                    "rename one so the OpenAPI document can tell them apart"
                )
    return schemas


def install(app: FastAPI, registry: ActionRegistry) -> None:
    """Serve FastAPI's document with the action bodies' schemas added at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in action_schemas(registry).items():
                if components.setdefault(name, schema) != schema:
                    raise RuntimeError(f"{registry.agent}: a body model is named {name!r} too")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
