"""Other teams' agents plugged in at run time, through real processes: an external agent (a
plain FastAPI app in a process of its own, tests/external_agent.py, not on agents/base, with
its own idempotency ledger) registered through `POST /agents`, and another through an Agent
resource on the fake Kubernetes API the controller watches (no Kubernetes API server can run
here; tests/controller_k8s/fake_kube_api.py stands in for it at the HTTP boundary). Each is
called by a workflow whose run succeeds, and each loses its first reply after doing the work:
the engine retries with the same Idempotency-Key and the effect happens exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import SERVICE_TOKEN, fresh_schema
from tests.controller_k8s.fake_kube_api import FakeKubeApi
from tests.e2e.conftest import Platform, launch

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "ingest"
pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(token="e2e-kube-token", plural="agents")
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def external_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The other team's agent, in a process of its own."""
    folder = tmp_path_factory.mktemp("external_agent")
    port = _free_port()
    env = {
        **os.environ,
        "EXTERNAL_AGENT_DB": str(folder / "ledger.sqlite"),
        "EXTERNAL_AGENT_TOKEN": SERVICE_TOKEN,
    }
    command = [sys.executable, "-m", "uvicorn", "tests.external_agent:create_app", "--factory"]
    with (folder / "agent.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "agent did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def platform(
    stream_prefix: str, tmp_path_factory: pytest.TempPathFactory, fake_api: FakeKubeApi
) -> Iterator[Platform]:
    """The platform with its controller watching the fake Kubernetes API's Agent resources."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake_api.url}}],
                "users": [{"name": "fake", "user": {"token": "e2e-kube-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    schemas = fresh_schema()
    schema = next(schemas)
    try:
        with launch(
            schema,
            f"{stream_prefix}external:",
            tmp_path_factory.mktemp("external_data"),
            tmp_path_factory.mktemp("external_logs"),
            KUBECONFIG=str(kubeconfig),
            CONTROLLER_KUBERNETES_WATCH="true",
            CONTROLLER_KUBERNETES_NAMESPACE=NAMESPACE,
            # No resync within the test: the resource's create and delete arrive by the watch.
            CONTROLLER_AGENT_RESYNC_S="3600",
        ) as running:
            yield running
    finally:
        next(schemas, None)


def _spec(name: str, agent: str) -> dict[str, Any]:
    """A built-in step, then the external agent's, whose first reply is lost."""
    return {
        "name": name,
        "inputs": {"rows": {"type": "integer", "required": True}},
        "steps": [
            {"id": "probe", "agent": "data-connector", "action": "noop"},
            {
                "id": "score",
                "agent": agent,
                "action": "score",
                "depends_on": ["probe"],
                "params": {"rows": "${inputs.rows}", "lose_reply": True},
                "retry": {"max_attempts": 3, "initial_interval_s": 0.2, "jitter": 0},
                "timeout_s": 10,
            },
        ],
    }


def _effects_of(agent_url: str, run_id: str) -> list[dict[str, Any]]:
    effects = httpx.get(f"{agent_url}/effects").json()["effects"]
    return [e for e in effects if e["run_id"] == run_id]


def _check_run(platform: Platform, run: dict[str, Any], agent_url: str, rows: int) -> None:
    assert run["status"] == "SUCCEEDED", json.dumps(run, indent=1)[:3000]
    score = {s["step_id"]: s for s in run["steps"]}["score"]
    assert score["output"] == {"score": 2 * rows}
    assert score["attempts"] == 2  # the lost reply, then the replayed one
    # Exactly one effect for the step, though the agent was called twice.
    effects = _effects_of(agent_url, run["run_id"])
    assert [e["step_id"] for e in effects] == ["score"]


def test_an_agent_registered_through_the_api_runs_a_step_exactly_once(
    platform: Platform, external_agent: str
) -> None:
    with platform.api() as api:
        registered = api.post("/agents", json={"name": "data-quality", "base_url": external_agent})
        assert registered.status_code == 201, registered.text
        assert registered.json()["actions"] == ["score", "sleep"]
        response = api.post(
            "/coordinate",
            json={"spec": _spec("quality-inline", "data-quality"), "inputs": {"rows": 21}},
        )
        assert response.status_code == 202, response.text
        run = platform.wait_for_run(response.json()["run_id"], timeout_s=60)
        _check_run(platform, run, external_agent, 21)

        # The health monitor polls it too.
        deadline = time.monotonic() + 20
        while True:
            shown = {a["agent"]: a for a in api.get("/agents/health").json()["agents"]}
            if shown.get("data-quality", {}).get("status") == "healthy":
                break
            assert time.monotonic() < deadline, shown.get("data-quality")
            time.sleep(0.5)


def test_an_agent_of_an_agent_resource_runs_a_registered_workflow(
    platform: Platform, external_agent: str, fake_api: FakeKubeApi
) -> None:
    fake_api.apply(
        {
            "apiVersion": "ingestion.platform.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "feature-engineering"},
            "spec": {"agentName": "feature-engineering", "baseUrl": external_agent},
        },
        NAMESPACE,
    )
    with platform.api() as api:
        deadline = time.monotonic() + 30
        while (found := api.get("/agents/feature-engineering")).status_code != 200:
            assert time.monotonic() < deadline, found.text
            time.sleep(0.3)
        assert found.json()["source"] == "kubernetes"
        assert found.json()["resource"] == f"{NAMESPACE}/feature-engineering"
        status = fake_api.get("feature-engineering", NAMESPACE).get("status") or {}
        assert status.get("phase") == "Registered" and status.get("actions") == ["score", "sleep"]

        spec = _spec("features", "feature-engineering")
        assert api.post("/workflows/definitions", json=spec).status_code == 201
        response = api.post("/coordinate", json={"workflow": "features", "inputs": {"rows": 5}})
        assert response.status_code == 202, response.text
        run = platform.wait_for_run(response.json()["run_id"], timeout_s=60)
        _check_run(platform, run, external_agent, 5)

        # The resource deleted: the registration goes with it.
        fake_api.delete("feature-engineering", NAMESPACE)
        deadline = time.monotonic() + 30
        while api.get("/agents/feature-engineering").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.3)
