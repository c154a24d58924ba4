"""Submit the built-in `test` workflow and show it as it happens, from the event streams."""

from __future__ import annotations

import json
import os
import time
import uuid
from graphlib import TopologicalSorter
from typing import Any

import httpx
import redis

from launcher.platform import RunningPlatform
from services.orchestrator_controller.settings import DEV_API_KEY
from shared.state.machine import EVENT_TYPES

STREAMS = sorted(EVENT_TYPES)
TERMINAL_EVENTS = {
    "ingestion.workflow.completed",
    "ingestion.workflow.failed",
    "ingestion.workflow.cancelled",
    "ingestion.workflow.compensated",
    "ingestion.workflow.compensation_failed",
}


def _follow(platform: RunningPlatform, run_id: str, client: redis.Redis, group: str) -> None:
    started = time.monotonic()
    deadline = started + 120
    while time.monotonic() < deadline:
        replies: Any = client.xreadgroup(group, "demo", dict.fromkeys(STREAMS, ">"), block=1000)
        for stream, messages in replies or []:
            for message_id, fields in messages:
                event = json.loads(fields[b"event"])
                client.xack(stream, group, message_id)
                if event.get("run_id") != run_id:
                    continue
                print(f"  {time.monotonic() - started:6.2f}s  {_describe(event)}")
                if event["type"] in TERMINAL_EVENTS:
                    return
    raise TimeoutError("the demo run did not finish within 120 s")


def _describe(event: dict[str, Any]) -> str:
    kind = event["type"].removeprefix("ingestion.")
    if kind.startswith("step."):
        text = f"{kind:<18} {event['step_id']:<13} {event.get('agent', '')}"
        if event.get("action"):
            text += f".{event['action']}"
        if "attempt" in event:
            text += f"  attempt {event['attempt']}"
        if "duration_ms" in event:
            text += f"  {event['duration_ms']:.0f} ms"
        if event.get("error"):
            text += f"  error: {event['error'].get('message', '')[:80]}"
        return text
    return f"{kind:<18} {event.get('reason') or event.get('workflow') or ''}"


def dag_text(steps: list[dict[str, Any]]) -> list[str]:
    """The run's DAG as lines, one per layer of steps that could run together."""
    actions = {s["step_id"]: s for s in steps if s.get("role", "action") == "action"}
    sorter = TopologicalSorter({sid: s["depends_on"] for sid, s in actions.items()})
    sorter.prepare()
    lines: list[str] = []
    while sorter.is_active():
        layer = sorted(sorter.get_ready())
        shown = []
        for sid in layer:
            step = actions[sid]
            after = f" <- {', '.join(step['depends_on'])}" if step["depends_on"] else ""
            shown.append(f"{sid} [{step['status']}]{after}")
        lines.append(f"  {len(lines) + 1}. " + "   ".join(shown))
        sorter.done(*layer)
    return lines


def run_demo(platform: RunningPlatform) -> int:
    """Run `test` once; print what happens and a summary. Exit status 0 when it succeeded."""
    events = redis.Redis.from_url(platform.infra.redis_url)
    group = f"demo-{uuid.uuid4().hex[:6]}"
    for stream in STREAMS:
        events.xgroup_create(stream, group, id="$", mkstream=True)
    api = httpx.Client(
        base_url=platform.controller_url,
        headers={"Authorization": f"Bearer {os.environ.get('DEMO_API_KEY', DEV_API_KEY)}"},
        timeout=10,
    )
    inputs = {"remote_url": f"http://127.0.0.1:{platform.ports.samples}/remote/orders_api.json"}
    print(f"\nweb UI: {platform.controller_url}/ui   API docs: {platform.controller_url}/docs")
    print(f"API key for this dev platform: {DEV_API_KEY}")
    print(f"events: Redis Streams at {platform.infra.redis_url}; logs: {platform.log_dir}/")
    print("POST /coordinate  {workflow: test}")
    response = api.post(
        "/coordinate",
        json={"workflow": "test", "inputs": inputs},
        headers={"Idempotency-Key": f"demo-{uuid.uuid4()}"},
    )
    response.raise_for_status()
    run_id = response.json()["run_id"]
    print(f"accepted: run {run_id} ({response.status_code}); events from Redis Streams:\n")
    try:
        _follow(platform, run_id, events, group)
    finally:
        for stream in STREAMS:
            events.xgroup_destroy(stream, group)
    run = api.get(f"/workflows/{run_id}").json()
    print(f"\nrun {run_id}: {run['status']} in {run['duration_ms']:.0f} ms")
    print(f"  {'step':<14}{'agent':<18}{'status':<11}{'attempts':>8}{'ms':>9}")
    for step in run["steps"]:
        duration = f"{step['duration_ms']:.0f}" if step["duration_ms"] is not None else "-"
        print(
            f"  {step['step_id']:<14}{step['agent']:<18}{step['status']:<11}"
            f"{step['attempts']:>8}{duration:>9}"
        )
    merged = next((s["output"] for s in run["steps"] if s["step_id"] == "merge"), None)
    if merged:
        where = merged.get("uri") or merged.get("table")
        print(
            f"\nmerged dataset {merged.get('dataset')}: {merged.get('rows')} rows "
            f"({merged.get('inserted')} inserted, {merged.get('updated')} updated), "
            f"{merged.get('target')} version {merged.get('version')}\n  at {where}"
            f"\n  its loads: GET /datasets/{merged.get('dataset')}/loads"
        )
    print("\nthe run's DAG, layer by layer (<- its dependencies):")
    print("\n".join(dag_text(run["steps"])))
    logs = f"logs: {platform.log_dir}/*.log; this run's lines: GET /workflows/{run_id}/logs"
    if run["status"] != "SUCCEEDED":
        print(f"\nFAILED: {run.get('error')}\n{logs}")
        return 1
    print(f"\n{logs}\ndetails: GET {platform.controller_url}/workflows/{run_id}")
    return 0
