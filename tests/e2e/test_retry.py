"""Retrying a failed run from its failed steps, through the running platform: a new run linked
to the old one, the steps that succeeded keep their outputs without running again, the rest
run; runs that cannot be retried are refused and nothing is created."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.e2e.conftest import Platform
from tests.serving import serve


def flaky_source() -> tuple[FastAPI, dict[str, bool]]:
    """An API that answers 404 until the test fixes it."""
    app, state = FastAPI(), {"up": False}

    @app.get("/orders")
    async def orders() -> JSONResponse:
        if not state["up"]:
            return JSONResponse({"detail": "not yet"}, status_code=404)
        return JSONResponse([{"id": 1}, {"id": 2}])

    return app, state


def spec(url: str) -> dict[str, Any]:
    return {
        "name": "retry-me",
        "steps": [
            {"id": "a", "agent": "data-connector", "action": "noop", "params": {"n": 1}},
            {
                "id": "b",
                "agent": "data-collector",
                "action": "collect",
                "depends_on": ["a"],
                "params": {"source": {"kind": "http", "url": url}},
            },
            {"id": "c", "agent": "data-merger", "action": "noop", "depends_on": ["b"]},
        ],
    }


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step_id"]: s for s in run["steps"]}


def test_a_failed_run_retried_from_its_failed_step(platform: Platform) -> None:
    app, state = flaky_source()
    with serve(app) as base, platform.api() as api:
        accepted = api.post("/coordinate", json={"spec": spec(f"{base}/orders")})
        assert accepted.status_code == 202, accepted.text
        old_id = accepted.json()["run_id"]
        failed = platform.wait_for_run(old_id)
        assert failed["status"] == "FAILED" and failed["failed_step"] == "b", failed
        old = steps_of(failed)

        state["up"] = True
        retried = api.post(f"/workflows/{old_id}/retry")
        assert retried.status_code == 202, retried.text
        assert retried.json()["retry_of"] == old_id
        new_id = retried.json()["run_id"]
        assert new_id != old_id
        run = platform.wait_for_run(new_id)

        assert run["status"] == "SUCCEEDED", run
        assert run["retry_of"] == old_id and run["inputs"] == failed["inputs"]
        new = steps_of(run)
        # `a` succeeded before: its output carried over, not run again.
        assert new["a"]["status"] == "SUCCEEDED" and new["a"]["attempts"] == 0
        assert new["a"]["output"] == old["a"]["output"]
        assert new["a"]["status_reason"] == f"reused from run {old_id}"
        # `b` failed before and ran again; `c` never ran before.
        assert new["b"]["attempts"] == 1 and new["b"]["output"]["records"] == 2
        assert new["c"]["status"] == "SUCCEEDED" and new["c"]["attempts"] == 1
        # The failed run's own history is unchanged.
        assert api.get(f"/workflows/{old_id}").json()["status"] == "FAILED"

        # Only FAILED or CANCELLED runs: the succeeded retry is a 409, and nothing is created.
        before = api.get("/workflows/status", params={"workflow": "retry-me"}).json()["total"]
        again = api.post(f"/workflows/{new_id}/retry")
        assert again.status_code == 409 and again.json()["error"] == "not_retryable"
        unknown = api.post("/workflows/00000000-0000-0000-0000-000000000000/retry")
        assert unknown.status_code == 404
        after = api.get("/workflows/status", params={"workflow": "retry-me"}).json()["total"]
        assert after == before
