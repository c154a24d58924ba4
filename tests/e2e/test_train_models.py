"""`train_models` through the real platform: the run history it learns from is recorded by
ordinary runs, the models are trained by the data-ml agent in the platform's own engine, the
versions land in a real MLflow registry (SQLite store) as champions, and the agents pick them
up without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml import registry
from tests.conftest import fresh_schema
from tests.e2e.conftest import Platform, launch

TELEMETRY = {
    "retry_strategy": "data-fetch-retry",
    "connection_optimization": "data-collector",
    "scheduling_intelligence": "data-scheduler",
}


@pytest.fixture(scope="module")
def ml_platform(
    stream_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, str]]:
    store = tmp_path_factory.mktemp("mlflow")
    uri = registry.local_tracking_uri(store)
    # The tables first, here: otherwise the agents create them at start one at a time (a lock)
    registry.prepare_store(uri)
    schemas = fresh_schema()
    schema = next(schemas)
    try:
        with launch(
            schema,
            f"{stream_prefix}ml:",
            tmp_path_factory.mktemp("ml_data"),
            tmp_path_factory.mktemp("ml_logs"),
            # Each agent with a model imports MLflow and opens the store before it is healthy.
            healthy_timeout_s=180,
            MLFLOW_TRACKING_URI=uri,
            AGENT_MODEL_REFRESH_S="1",
            ENGINE_MODEL_REFRESH_S="1",
        ) as platform:
            yield platform, uri
    finally:
        next(schemas, None)


def _run(platform: Platform, workflow: str, inputs: dict[str, Any], timeout_s: float) -> Any:
    with platform.api() as api:
        response = api.post("/coordinate", json={"workflow": workflow, "inputs": inputs})
        assert response.status_code == 202, response.text
    return platform.wait_for_run(response.json()["run_id"], timeout_s=timeout_s)


def _failures(run: dict[str, Any]) -> list[Any]:
    return [(s["step_id"], s["status"], s["error"]) for s in run["steps"] if s["error"]]


def _served(platform: Platform, agent: str, model: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{platform.ports.agents[agent]}/health"
    detail: dict[str, Any] = httpx.get(url, timeout=5).json()["checks"][f"model:{model}"]
    return detail


@pytest.mark.timeout(900)  # three quick trainings
def test_train_models_learns_registers_and_the_agents_follow(
    ml_platform: tuple[Platform, str],
) -> None:
    platform, uri = ml_platform
    for model, agent in TELEMETRY.items():  # an empty registry: baselines, and /health says so
        served = _served(platform, agent, model)
        assert served["source"] == "baseline" and "problem" in served, served

    remote = platform.samples_url("remote/orders_api.json")
    for _ in range(3):  # history: collects with row counts, step attempts
        run = _run(platform, "test", {"remote_url": remote}, timeout_s=120)
        assert run["status"] == "SUCCEEDED", run

    first = _run(platform, "train_models", {"quick": True}, timeout_s=600)
    assert first["status"] == "SUCCEEDED", _failures(first)
    steps = {s["step_id"]: s for s in first["steps"]}
    assert steps["history"]["output"]["runs"] >= 3
    assert steps["history"]["output"]["collects"] >= 3
    report = steps["report"]["output"]
    assert report["trained"] == 3 and sorted(report["models"]) == sorted(TELEMETRY)
    for model, result in report["models"].items():
        # Each beats its baseline (also in quick mode): as the first such version, champion.
        assert result["promoted"] and result["reason"].startswith("promoted"), result
        assert registry.champion_version(model, uri=uri) == result["version"]

    # The agents load the new champions without a restart (refresh every second here).
    deadline = time.monotonic() + 30
    pending = set(report["models"])
    while pending and time.monotonic() < deadline:
        for model in list(pending):
            served = _served(platform, TELEMETRY[model], model)
            if served["source"] == "registry":
                assert served["version"] == report["models"][model]["version"]
                pending.discard(model)
        time.sleep(0.5)
    assert not pending, pending
    engine_models = httpx.get(f"http://127.0.0.1:{platform.ports.engine}/models", timeout=5)
    assert engine_models.status_code == 200, engine_models.text

    # A retrained version that does not beat the champion leaves the alias where it is: that
    # rule is ml/registry.py's, tested in tests/ml/test_registry.py without a training run.


def test_the_data_ml_agent_says_which_models_it_can_train(
    ml_platform: tuple[Platform, str], tmp_path: Path
) -> None:
    platform, _ = ml_platform
    with platform.api() as api:
        bad = api.post(
            "/coordinate", json={"workflow": "train_models", "inputs": {"models": ["nope"]}}
        )
    run = platform.wait_for_run(bad.json()["run_id"], timeout_s=120)
    assert run["status"] == "FAILED"
    failed = next(s for s in run["steps"] if s["status"] == "FAILED")
    assert failed["error"]["code"] == "training_failed"
    assert "unknown models" in failed["error"]["message"]
