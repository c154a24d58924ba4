"""The checks, in the order they run; each returns its reason or raises Failed / Skipped.

Only `noop` is called for the checks that would run an action, unless the agent's OpenAPI
declares an action read-only (`x-agent-action.read_only`) or the caller allows effects
(`--allow-effects`, for a test deployment): then the replay checks run the documented examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx

from agents.conformance.probe import (
    Agent,
    Failed,
    Operation,
    Result,
    Skipped,
    error_body,
    json_of,
    nonce,
    resolve,
)

HEALTH_STATES = {"healthy": 200, "degraded": 200, "unhealthy": 503}
REPLAYED = "Idempotent-Replayed"


def health(agent: Agent) -> str:
    """GET /health: {status, agent, actions, checks}; 503 exactly when unhealthy."""
    response = agent.client.get("/health")
    body = json_of(response)
    if not isinstance(body, dict):
        raise Failed(f"the body is not a JSON object: {body!r}")
    status = body.get("status")
    if status not in HEALTH_STATES:
        raise Failed(f"status {status!r} is none of {sorted(HEALTH_STATES)}")
    if response.status_code != HEALTH_STATES[status]:
        raise Failed(f"status {status!r} came with HTTP {response.status_code}")
    if not isinstance(body.get("agent"), str) or not body["agent"]:
        raise Failed("`agent` (the agent's name) is missing")
    actions = body.get("actions")
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise Failed(f"`actions` is not a list of names: {actions!r}")
    if not isinstance(body.get("checks"), dict):
        raise Failed("`checks` (each dependency's state) is not an object")
    agent.actions = sorted(actions)
    return f"{body['agent']} is {status}, {len(actions)} actions"


def actions_listed(agent: Agent) -> str:
    """GET /api/v1/actions: {name: {description, body}} for the actions /health names."""
    body = json_of(agent.client.get("/api/v1/actions", headers=agent.auth()))
    if not isinstance(body, dict) or not body:
        raise Failed(f"expected an object of actions, got {body!r:.160}")
    for name, entry in body.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("body"), dict):
            raise Failed(f"{name}: no `body` JSON schema")
        if not isinstance(entry.get("description"), str):
            raise Failed(f"{name}: no `description`")
    if "noop" not in body:
        raise Failed("no `noop` action (every agent has one; the kit and benchmarks call it)")
    if agent.actions and sorted(body) != agent.actions:
        raise Failed(f"lists {sorted(body)} but /health says {agent.actions}")
    agent.actions = sorted(body)
    return ", ".join(agent.actions)


def actions_auth(agent: Agent) -> str:
    """The action list needs the service token: 401 without one and with a wrong one."""
    for token, what in ((None, "without a token"), (nonce("wrong"), "with a wrong token")):
        response = agent.client.get("/api/v1/actions", headers=agent.auth(token))
        try:
            error_body(response, 401)
        except Failed as exc:
            raise Failed(f"{what}: {exc}") from None
    return "401 without a token and with a wrong one"


def openapi(agent: Agent) -> str:
    """GET /openapi.json: one POST operation per action, each with its body schema and example."""
    document = json_of(agent.client.get("/openapi.json"))
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        raise Failed("no `paths` in the OpenAPI document")
    declared = {
        path.removeprefix("/api/v1/")
        for path, item in paths.items()
        if path.startswith("/api/v1/") and isinstance(item, dict) and "post" in item
    }
    if declared != set(agent.actions):
        raise Failed(f"POST operations {sorted(declared)} but actions {agent.actions}")
    for name in agent.actions:
        operation = paths[f"/api/v1/{name}"]["post"]
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        if not isinstance(media.get("schema"), dict) or "example" not in media:
            raise Failed(f"{name}: the operation documents no JSON body schema and example")
        traits = operation.get("x-agent-action") or {}
        agent.operations[name] = Operation(
            name=name,
            example=media["example"],
            schema=resolve(media["schema"], document),
            # Undeclared: taken as effectful and ledger-backed, except noop (by nature).
            read_only=bool(traits.get("read_only", name == "noop")),
            ledger=traits.get("idempotency", "by_nature" if name == "noop" else "ledger")
            == "ledger",
        )
    return f"{len(agent.actions)} operations, each with a body schema and an example"


def missing_token(agent: Agent) -> str:
    """An action called without a token is a 401 in the error format."""
    error_body(agent.post("noop", {}, token=None), 401)
    return "401"


def wrong_token(agent: Agent) -> str:
    """An action called with a wrong token is a 401 in the error format."""
    error_body(agent.post("noop", {}, token=nonce("wrong")), 401)
    return "401"


def unknown_action(agent: Agent) -> str:
    """An action the agent does not have is a 404 in the error format."""
    name = nonce("no_such_action").replace("-", "_")
    body = error_body(agent.post(name, {}), 404)
    return f"404 {body['error']}"


def bad_json(agent: Agent) -> str:
    """A body that is not JSON is a 422 in the error format."""
    body = error_body(agent.post("noop", content=b"{not json"), 422)
    return f"422 {body['error']}"


def bad_body(name: str) -> Callable[[Agent], str]:
    """A body that is not an object (every action's body is one) is a 422, before any work."""

    def check(agent: Agent) -> str:
        body = error_body(agent.post(name, [nonce("not-an-object")]), 422)
        return f"422 {body['error']}"

    return check


def bad_run_id(agent: Agent) -> str:
    """X-Run-Id names a folder: one that is not an id ([A-Za-z0-9][A-Za-z0-9_-]{0,63}) is a 422."""
    response = agent.post("noop", {}, headers={"X-Run-Id": "../datasets"})
    body = error_body(response, 422)
    return f"422 {body['error']}"


def noop_idempotency(agent: Agent) -> str:
    """noop with one Idempotency-Key twice answers the same; a different body per its kind."""
    operation = agent.operations.get("noop")
    key, body = nonce("conformance-noop"), {"conformance": nonce("echo")}
    first = agent.post("noop", body, headers={"Idempotency-Key": key})
    second = agent.post("noop", body, headers={"Idempotency-Key": key})
    for response in (first, second):
        if response.status_code != 200:
            raise Failed(f"expected 200, got {response.status_code} {response.text[:160]!r}")
    if json_of(first) != json_of(second):
        raise Failed("the same key and body answered two different results")
    if operation is not None and operation.ledger:
        return _replayed(agent, "noop", first, second, key, {"conformance": nonce("other")})
    if second.headers.get(REPLAYED):
        raise Failed(f"declared idempotent by nature, yet answered {REPLAYED}")
    other = agent.post("noop", {"conformance": nonce("other")}, headers={"Idempotency-Key": key})
    if other.status_code != 200:
        raise Failed(f"by nature: a different body under the key must run, got {other.status_code}")
    return "idempotent by nature: the same answer twice, a different body runs afresh"


def replay(allow_effects: bool) -> Callable[[Agent], str]:
    """A ledger-backed action: same key and body replay the outcome (`Idempotent-Replayed:
    true`, same status and body); same key, different body: 409 `idempotency_key_reused`."""

    def check(agent: Agent) -> str:
        # Read-only first; then those with a second valid body, to check a reused key too.
        candidates = sorted(
            (op for op in agent.operations.values() if op.ledger and op.name != "noop"),
            key=lambda op: (not op.read_only, _different_body(op) is None, op.name),
        )
        callable_ = [op for op in candidates if op.read_only or allow_effects]
        if not candidates:
            raise Skipped("every action is idempotent by nature: nothing is replayed")
        if not callable_:
            raise Skipped(
                f"{', '.join(op.name for op in candidates)} may have effects; rerun with "
                "--allow-effects against a test deployment to check their replay"
            )
        inconclusive = []
        for op in callable_:
            key = nonce(f"conformance-{op.name}")
            first = agent.post(op.name, op.example, headers={"Idempotency-Key": key})
            # A retryable outcome is not stored for replay: the next attempt runs again.
            if first.status_code >= 500 or first.status_code in (409, 429):
                inconclusive.append(f"{op.name}: {first.status_code}")
                continue
            second = agent.post(op.name, op.example, headers={"Idempotency-Key": key})
            changed = _different_body(op)
            return _replayed(agent, op.name, first, second, key, changed)
        raise Skipped(f"no example gave a replayable outcome ({'; '.join(inconclusive)})")

    return check


def _replayed(
    agent: Agent,
    name: str,
    first: httpx.Response,
    second: httpx.Response,
    key: str,
    changed: Any,
) -> str:
    if second.headers.get(REPLAYED, "").lower() != "true":
        raise Failed(f"{name}: the repeat did not answer {REPLAYED}: true")
    if second.status_code != first.status_code or json_of(second) != json_of(first):
        raise Failed(
            f"{name}: the repeat answered {second.status_code} {second.text[:120]!r}, the "
            f"first {first.status_code} {first.text[:120]!r}"
        )
    if changed is None:
        return f"{name}: replayed {first.status_code} (no second valid body to try reuse with)"
    reused = agent.post(name, changed, headers={"Idempotency-Key": key})
    try:
        error_body(reused, 409, "idempotency_key_reused")
    except Failed as exc:
        raise Failed(f"{name}: the key with a different body: {exc}") from None
    if reused.json()["retryable"]:
        raise Failed(f"{name}: a reused key is not retryable, yet says retryable: true")
    return f"{name}: replayed {first.status_code}; the key with another body: 409"


def _different_body(op: Operation) -> Any:
    """The example with one optional field added at its default: valid, yet another request."""
    if not isinstance(op.example, dict):
        return None
    properties = op.schema.get("properties") or {}
    required = set(op.schema.get("required") or [])
    optional = [
        (name, schema)
        for name, schema in sorted(properties.items())
        if name not in required and isinstance(schema, dict) and "default" in schema
    ]
    for name, schema in optional:
        if name not in op.example:
            return {**op.example, name: schema["default"]}
    # Else an optional field the example sets: back to its default, if that differs.
    for name, schema in optional:
        if op.example[name] != schema["default"]:
            return {**op.example, name: schema["default"]}
    return None


def all_checks(agent: Agent, allow_effects: bool) -> Iterator[tuple[str, Callable[[Agent], str]]]:
    """(name, check) pairs in order; the per-action ones once the actions are known."""
    yield "health", health
    yield "actions.listed", actions_listed
    yield "actions.auth", actions_auth
    yield "openapi.operations", openapi
    yield "auth.missing_token", missing_token
    yield "auth.wrong_token", wrong_token
    yield "errors.unknown_action", unknown_action
    yield "errors.bad_json", bad_json
    for name in agent.actions:
        yield f"errors.bad_body[{name}]", bad_body(name)
    yield "headers.bad_run_id", bad_run_id
    yield "idempotency.noop", noop_idempotency
    yield "idempotency.replay", replay(allow_effects)


def run(agent: Agent, *, allow_effects: bool = False) -> list[Result]:
    """Every check against `agent`, in order; a failed one does not stop the others."""
    results = []
    for name, check in all_checks(agent, allow_effects):
        try:
            results.append(Result(name, "PASS", check(agent)))
        except Failed as exc:
            results.append(Result(name, "FAIL", str(exc)))
        except Skipped as exc:
            results.append(Result(name, "SKIP", str(exc)))
        except httpx.HTTPError as exc:
            results.append(Result(name, "FAIL", f"{type(exc).__name__}: {exc}"))
    return results
