"""Traces across real processes: one trace per run, from the controller through the engine to
the agents, exported over OTLP/HTTP to a receiver run by the tests (tests/otlp_receiver.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Observed, Platform
from tests.otlp_receiver import SERVER, Received, Receiver


@pytest.fixture(scope="module")
def traced(observed: Observed) -> tuple[Platform, Receiver]:
    return observed.platform, observed.traces


def test_a_run_is_one_trace_from_controller_to_agents(
    traced: tuple[Platform, Receiver], tmp_path: Path
) -> None:
    platform, receiver = traced
    with platform.api() as api:
        response = api.post(
            "/coordinate",
            json={
                "workflow": "test",
                "inputs": {
                    "remote_url": platform.samples_url("remote/orders_api.json"),
                    "dataset": f"orders_{uuid.uuid4().hex[:6]}",
                },
            },
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]
    run = platform.wait_for_run(run_id)
    assert run["status"] == "SUCCEEDED", run
    trace_id = run["trace_id"]
    attempts = sum(s["attempts"] for s in run["steps"])

    def engine_spans(spans: list[Received]) -> list[Received]:
        return [s for s in spans if s.service == "workflow-engine" and s.name.startswith("step ")]

    def agent_spans(spans: list[Received]) -> list[Received]:
        # Server spans: one per action call.
        return [
            s
            for s in spans
            if s.service not in ("workflow-engine", "orchestrator-controller") and s.kind == SERVER
        ]

    # Spans are exported in batches every 200 ms: wait for the last ones.
    deadline = time.monotonic() + 15
    spans = receiver.of_trace(trace_id)
    while time.monotonic() < deadline and (
        len(engine_spans(spans)) < attempts or len(agent_spans(spans)) < attempts
    ):
        time.sleep(0.2)
        spans = receiver.of_trace(trace_id)

    # Every span naming the run is in the run's trace, whose id is the one the API shows.
    with receiver.lock:
        about_run = [s for s in receiver.spans if s.attributes.get("run_id") == run_id]
    assert about_run and {s.trace_id for s in about_run} == {trace_id}

    [root] = [s for s in spans if s.service == "orchestrator-controller"]
    assert root.name == "coordinate" and root.parent_span_id == ""
    assert root.attributes["run_id"] == run_id

    # One engine span per step attempt, under the controller's root span.
    steps = engine_spans(spans)
    assert len(steps) == attempts
    assert {s.attributes["step_id"] for s in steps} == {s["step_id"] for s in run["steps"]}
    assert all(s.parent_span_id == root.span_id for s in steps)
    assert all(s.attributes["run_id"] == run_id for s in steps)

    # One agent span per call, each a child of the engine span of its attempt.
    calls = agent_spans(spans)
    assert len(calls) == attempts
    by_id = {s.span_id: s for s in steps}
    for call in calls:
        parent = by_id.get(call.parent_span_id)
        assert parent is not None, call
        assert call.attributes["step_id"] == parent.attributes["step_id"]
        assert call.attributes["run_id"] == run_id
    assert len({s.service for s in calls}) >= 2

    # The agents' log lines carry the trace id too.
    logs = (Path(platform.env["CONTROLLER_LOG_DIR"]) / "data-merger.log").read_text()
    assert f'"trace_id":"{trace_id}"' in logs


def _root_and_steps(receiver: Receiver, run: dict[str, Any]) -> tuple[Received, list[Received]]:
    """The run's controller root span and its engine step spans, once all have arrived."""
    attempts = sum(s["attempts"] for s in run["steps"])
    deadline = time.monotonic() + 15
    while True:
        spans = receiver.of_trace(run["trace_id"])
        roots = [s for s in spans if s.service == "orchestrator-controller"]
        steps = [s for s in spans if s.service == "workflow-engine" and s.name.startswith("step ")]
        if (roots and len(steps) >= attempts) or time.monotonic() > deadline:
            assert len(roots) == 1, roots
            return roots[0], steps
        time.sleep(0.2)


def test_scheduled_and_triggered_runs_are_traces_with_a_root(
    traced: tuple[Platform, Receiver],
) -> None:
    """A run the ticker fires, and one a schedule's trigger starts, get the same tree as a run
    from /coordinate: a root span from the controller, every step attempt under it."""
    platform, receiver = traced
    inputs = {
        "remote_url": platform.samples_url("remote/orders_api.json"),
        "dataset": f"sched_{uuid.uuid4().hex[:6]}",
    }
    with platform.api() as api:
        # continuous: the ticker fires it at once (no run of it is active)
        ticking = {"name": "traced-ticker", "workflow": "test", "continuous": True}
        assert api.post("/schedules", json={**ticking, "inputs": inputs}).status_code == 201
        yearly = {"name": "traced-trigger", "workflow": "test", "cron": "0 0 1 1 *"}
        assert api.post("/schedules", json={**yearly, "inputs": inputs}).status_code == 201

        deadline = time.monotonic() + 20
        fired: list[dict[str, Any]] = []
        while not fired and time.monotonic() < deadline:
            last_runs = api.get("/schedules/traced-ticker", params={"runs": 5}).json()["last_runs"]
            fired = [f for f in last_runs if f["run_id"]]
            time.sleep(0.2)
        assert fired, "the continuous schedule never fired"
        assert api.patch("/schedules/traced-ticker", json={"enabled": False}).status_code == 200
        triggered = api.post("/schedules/traced-trigger/trigger")
        assert triggered.status_code in (200, 202), triggered.text

    for run_id, name, schedule in (
        (fired[0]["run_id"], "schedule", "traced-ticker"),
        (triggered.json()["run_id"], "trigger", "traced-trigger"),
    ):
        run = platform.wait_for_run(run_id)
        assert run["status"] == "SUCCEEDED", run
        root, steps = _root_and_steps(receiver, run)
        assert root.name == name and root.parent_span_id == ""
        assert root.attributes["run_id"] == run_id
        assert root.attributes["schedule"] == schedule
        assert len(steps) == sum(s["attempts"] for s in run["steps"])
        assert all(s.parent_span_id == root.span_id for s in steps)
