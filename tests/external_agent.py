"""Another team's agent, written apart from `agents/base`: a plain FastAPI app speaking the
agent protocol, as a service the platform does not own would.

It keeps its own idempotency ledger by `Idempotency-Key` in SQLite: the first request with a
key performs the effect (a row in `effects`) and stores the answer; a repeat gets the stored
answer with `Idempotent-Replayed: true` and performs nothing. A body with `lose_reply: true`
makes the first answer of a key a 503 *after* the effect is done, as a reply lost on the way
back would look to the engine (the retry then gets the stored answer).

Run it in a process of its own: `EXTERNAL_AGENT_DB=/tmp/a.sqlite uvicorn
tests.external_agent:create_app --factory --port N`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

TOKEN_ENV = "EXTERNAL_AGENT_TOKEN"
ACTIONS = {
    "score": {
        "description": "score a batch of rows (doubles `rows`)",
        "body": {"type": "object", "properties": {"rows": {"type": "integer"}}},
    },
    "sleep": {
        "description": "wait `seconds`, then answer (for timeouts and concurrency)",
        "body": {"type": "object", "properties": {"seconds": {"type": "number"}}},
    },
}


def create_app(db_path: str | None = None, token: str | None = None) -> FastAPI:
    """The agent; its ledger in `db_path` (or $EXTERNAL_AGENT_DB)."""
    path = db_path or os.environ["EXTERNAL_AGENT_DB"]
    expected = token or os.environ.get(TOKEN_ENV, "dev-service-token")
    lock = threading.Lock()
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, answer TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT, run_id TEXT, step_id TEXT)")
    app = FastAPI(title="external-agent")
    state = {"in_flight": 0, "most_in_flight": 0}

    def authorized(header: str | None) -> bool:
        return header == f"Bearer {expected}"

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/api/v1/actions")
    async def actions(authorization: str | None = Header(None)) -> Any:
        if not authorized(authorization):
            return JSONResponse({"error": "unauthorized", "message": "bad token"}, 401)
        return ACTIONS

    @app.get("/effects")
    async def effects() -> dict[str, Any]:
        rows = db.execute("SELECT key, run_id, step_id FROM effects").fetchall()
        return {
            "effects": [{"key": k, "run_id": r, "step_id": s} for k, r, s in rows],
            "most_in_flight": state["most_in_flight"],
            "in_flight": state["in_flight"],
        }

    @app.post("/api/v1/{action}")
    async def act(action: str, request: Request) -> JSONResponse:
        if not authorized(request.headers.get("authorization")):
            return JSONResponse({"error": "unauthorized", "message": "bad token"}, 401)
        if action not in ACTIONS:
            return JSONResponse({"error": "unknown_action", "message": action}, 404)
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"error": "missing_key", "message": "Idempotency-Key"}, 422)
        params = await request.json()
        with lock:
            stored = db.execute("SELECT answer FROM ledger WHERE key = ?", (key,)).fetchone()
        if stored is not None:  # a repeat: the stored answer, no second effect
            return JSONResponse(json.loads(stored[0]), headers={"Idempotent-Replayed": "true"})
        state["in_flight"] += 1
        state["most_in_flight"] = max(state["most_in_flight"], state["in_flight"])
        try:
            if action == "sleep":
                await asyncio.sleep(float(params.get("seconds", 0)))
                answer: dict[str, Any] = {"slept": params.get("seconds", 0)}
            else:
                answer = {"score": int(params.get("rows", 0)) * 2}
        finally:
            state["in_flight"] -= 1
        with lock:
            db.execute(
                "INSERT INTO effects VALUES (?, ?, ?)",
                (key, request.headers.get("x-run-id"), request.headers.get("x-step-id")),
            )
            db.execute("INSERT INTO ledger VALUES (?, ?)", (key, json.dumps(answer)))
        if params.get("lose_reply"):
            # The effect is done and recorded; the answer never reaches the caller.
            return JSONResponse({"error": "unavailable", "message": "reply lost"}, 503)
        return JSONResponse(answer)

    return app
