"""A run of the built-in `test` workflow through real processes: controller → engine → agents,
with its events read back from Redis Streams through a consumer group and its metrics scraped."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import redis

from shared.state.machine import EVENT_TYPES
from tests.conftest import REDIS_URL, SERVICE_TOKEN
from tests.datasets import merged_table
from tests.e2e.conftest import Platform

STREAMS = sorted(EVENT_TYPES)


def _subscribe(prefix: str) -> tuple[redis.Redis, str]:
    client = redis.Redis.from_url(REDIS_URL)
    group = f"g-{uuid.uuid4().hex[:6]}"
    for stream in STREAMS:
        client.xgroup_create(prefix + stream, group, id="$", mkstream=True)
    return client, group


def _read_events(client: redis.Redis, group: str, prefix: str, run_id: str) -> list[dict]:
    events = []
    while True:
        replies: Any = client.xreadgroup(
            group, "reader", {prefix + s: ">" for s in STREAMS}, count=1000, block=200
        )
        if not replies:
            break
        for stream, messages in replies:
            for message_id, fields in messages:
                client.xack(stream, group, message_id)
                event = json.loads(fields[b"event"])
                if event["run_id"] == run_id:
                    events.append(event)
    return sorted(events, key=lambda e: e["sequence"])


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_test_workflow_runs_end_to_end(platform: Platform) -> None:
    events, group = _subscribe(platform.stream_prefix)
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
    assert run["status"] == "SUCCEEDED", json.dumps(run, indent=1)[:4000]
    steps = {s["step_id"]: s for s in run["steps"]}
    assert set(steps) == {
        "check_source",
        "fetch_remote",
        "collect",
        "convert_csv",
        "convert_json",
        "merge",
        "quality",
        "next_run",
    }
    assert all(s["status"] == "SUCCEEDED" and s["attempts"] == 1 for s in steps.values())
    # 60 + 60 CSV rows and 30 JSON rows, 10 of which update CSV rows: 140 unique orders.
    merged = steps["merge"]["output"]
    assert merged["rows"] == 140
    table = merged_table(merged)
    assert table.num_rows == 140
    assert sorted(table.column("order_id").to_pylist()) == list(range(1, 141))
    assert len(steps["next_run"]["output"]["next_runs"]) == 3
    # convert_csv and convert_json ran in parallel branches: both started before merge.
    assert steps["convert_json"]["started_at"] < steps["merge"]["started_at"]

    # Every state change is in the streams, in order, through a consumer group.
    seen = _read_events(events, group, platform.stream_prefix, run_id)
    types = [e["type"] for e in seen]
    assert types[0] == "ingestion.workflow.pending"
    assert types[1] == "ingestion.workflow.started"
    assert types[-1] == "ingestion.workflow.completed"
    assert types.count("ingestion.step.started") == 8
    assert types.count("ingestion.step.succeeded") == 8
    for event in seen:
        assert {"id", "type", "schema_version", "run_id", "time", "sequence"} <= set(event)

    metrics = httpx.get(f"http://127.0.0.1:{platform.ports.engine}/metrics").text
    assert _metric(metrics, "workflows_executed_total", type="test", status="SUCCEEDED") >= 1
    assert _metric(metrics, "workflow_execution_duration_seconds_count", type="test") >= 1
    assert "agent_coordination_latency_seconds_bucket" in metrics
    for name in ("active_workflows", "workflow_queue_size"):
        assert f"\n{name} " in metrics or metrics.startswith(f"{name} ")


def test_agent_health_is_monitored(platform: Platform) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        health = httpx.get(f"{platform.controller}/agents/health").json()
        if health["status"] == "healthy":
            break
        time.sleep(0.5)
    assert health["status"] == "healthy", health
    assert {a["agent"] for a in health["agents"]} == set(platform.ports.agents)
    assert all(a["latency_ms"] is not None for a in health["agents"])
    metrics = httpx.get(f"{platform.controller}/metrics").text
    assert _metric(metrics, "agent_health_status", agent="data-merger") == 1.0
    # Each agent's change to healthy is in its history (published by the relay shortly).
    url = f"{platform.controller}/agents/health/history"
    for _ in range(50):
        changes = httpx.get(url, params={"agent": "data-merger"}).json()["items"]
        if changes:
            break
        time.sleep(0.2)
    assert changes and changes[0]["agent"] == "data-merger", changes
    assert changes[0]["status"] == "healthy" and changes[0]["time"] is not None
    assert httpx.get(url, params={"agent": "nope"}).status_code == 404


def test_services_refuse_missing_or_wrong_credentials(platform: Platform) -> None:
    engine = f"http://127.0.0.1:{platform.ports.engine}"
    agent = f"http://127.0.0.1:{platform.ports.agents['data-connector']}"
    body = {"run_id": str(uuid.uuid4())}
    assert httpx.post(f"{engine}/execute", json=body).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert httpx.post(f"{engine}/execute", json=body, headers=wrong).status_code == 401
    assert httpx.post(f"{agent}/api/v1/noop", json={}).status_code == 401
    assert httpx.post(f"{agent}/api/v1/noop", json={}, headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    assert httpx.post(f"{engine}/execute", json=body, headers=right).status_code == 404
    assert httpx.post(f"{agent}/api/v1/noop", json={}, headers=right).status_code == 200
    assert httpx.get(f"{engine}/health").status_code == 200
    assert httpx.get(f"{agent}/metrics").status_code == 200


def test_run_submitted_while_the_engine_is_down_completes_after_it_starts(
    platform: Platform,
) -> None:
    spec = {
        "name": "while-down",
        "steps": [
            {"id": "a", "agent": "data-connector", "action": "noop"},
            {"id": "b", "agent": "data-scheduler", "action": "noop", "depends_on": ["a"]},
        ],
    }
    platform.engine.stop()
    controller_log = platform.services["orchestrator-controller"].log_path
    failed_before = controller_log.read_text().count("engine unreachable")
    try:
        with platform.api() as api:
            response = api.post("/coordinate", json={"spec": spec})
            assert response.status_code == 202
            run_id = response.json()["run_id"]
            # The hand-off at submission and a round after it both fail; the run waits.
            deadline = time.monotonic() + 30
            while controller_log.read_text().count("engine unreachable") < failed_before + 2:
                assert time.monotonic() < deadline, "the controller did not try the engine"
                time.sleep(0.2)
            assert api.get(f"/workflows/{run_id}").json()["status"] == "PENDING"
            health = httpx.get(f"{platform.controller}/health").json()
            assert health["status"] == "degraded" and health["checks"]["engine"].startswith(
                "down:"
            ), health
    finally:
        platform.engine.start()
        platform.engine.wait_healthy()
    assert platform.wait_for_run(run_id)["status"] == "SUCCEEDED"
    health = httpx.get(f"{platform.controller}/health").json()
    assert health["status"] == "healthy", health
    assert health["checks"] == {"database": "ok", "redis": "ok", "engine": "ok", "relay": "ok"}
