"""What each DAG task does, against a real controller process: trigger /coordinate with the
DAG run's key, rejoin the same run on a retry, wait for it, and fail when the run fails."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from launcher.processes import Service, free_port
from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, REDIS_URL, SERVICE_TOKEN
from tests.schedules.helpers import API_KEY, AUTH, finish_run, one_step_spec

DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"


def load_client() -> ModuleType:
    """airflow/dags/ingestion_client.py, which needs only the standard library."""
    spec = importlib.util.spec_from_file_location("ingestion_client", DAGS / "ingestion_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ingestion_client"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


client_module = load_client()


@pytest.fixture(scope="module")
def controller_url(module_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = Service(
        "controller",
        "services.orchestrator_controller.app",
        free_port(),
        {
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "DB_SCHEMA": module_env["db_schema"],
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "CONTROLLER_API_KEYS": json.dumps([API_KEY]),
            "CONTROLLER_ENGINE_URL": "http://127.0.0.1:9",  # the test plays the engine
            "CONTROLLER_SEED_SCHEDULES": "false",
            "CONTROLLER_REGISTER_BUILTIN_WORKFLOWS": "false",
            "CONTROLLER_HEALTH_INTERVAL_S": "60",
        },
        tmp_path_factory.mktemp("logs") / "controller.log",
    )
    service.start()
    try:
        service.wait_healthy(timeout_s=60)
        spec = one_step_spec("nightly")
        registered = httpx.post(f"{service.url}/workflows/definitions", json=spec, headers=AUTH)
        assert registered.status_code == 201, registered.text
        yield service.url
    finally:
        service.stop()


def controller(url: str) -> Any:
    return client_module.Controller(url=url, api_key=API_KEY, poll_s=0.1)


def test_the_key_comes_from_the_logical_date() -> None:
    when = datetime(2026, 11, 27, 6, tzinfo=UTC)
    key = client_module.idempotency_key("base_standard_ingestion_workflow", when, "manual__x")
    assert key == "airflow:base_standard_ingestion_workflow:2026-11-27T06:00:00+00:00"
    assert client_module.idempotency_key("d", None, "manual__x") == "airflow:d:manual__x"


def test_a_retried_task_rejoins_the_same_run(controller_url: str) -> None:
    api = controller(controller_url)
    first = client_module.trigger(api, "nightly", "airflow:nightly:2026-01-01T00:00:00+00:00")
    again = client_module.trigger(api, "nightly", "airflow:nightly:2026-01-01T00:00:00+00:00")
    other = client_module.trigger(api, "nightly", "airflow:nightly:2026-01-01T06:00:00+00:00")
    assert first == again != other


def test_an_unknown_workflow_fails_the_task(controller_url: str) -> None:
    with pytest.raises(RuntimeError, match="422"):
        client_module.trigger(controller(controller_url), "nothing", "k-unknown")


async def play_engine(module_env: dict, url: str, key: str, error: dict | None) -> None:
    """Finish the run for `key` (the same key names the same run) as an engine would."""
    run_id = await asyncio.to_thread(client_module.trigger, controller(url), "nightly", key)
    engine = create_engine(
        CommonSettings(database_url=DATABASE_URL, db_schema=module_env["db_schema"])
    )
    try:
        await finish_run(
            create_sessionmaker(engine), run_id, schema=module_env["db_schema"], error=error
        )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fails", [False, True])
async def test_the_task_waits_for_the_run_and_fails_with_it(
    module_env: dict, controller_url: str, fails: bool
) -> None:
    key = f"airflow:nightly:{'fail' if fails else 'ok'}"
    error = {"code": "boom", "message": "source down"} if fails else None
    task = asyncio.to_thread(
        client_module.coordinate_and_wait,
        "nightly",
        key,
        controller=controller(controller_url),
        timeout_s=30,
    )
    outcome = asyncio.gather(task, play_engine(module_env, controller_url, key, error))
    if fails:
        with pytest.raises(client_module.RunFailed, match="ended FAILED: step only failed"):
            await outcome
    else:
        result, _ = await outcome
        assert result["status"] == "SUCCEEDED"
