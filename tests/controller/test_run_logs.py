"""GET /workflows/{id}/logs in-process: lines from the services' files, merged, filtered, capped."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.logs import JsonFormatter
from tests.conftest import asgi_client, reads_with
from tests.controller.test_api import KEY, inline_spec


def write_lines(
    path: Path, service: str, lines: list[tuple[float, str, dict[str, object]]]
) -> None:
    """Log lines as `service` writes them (its formatter), at the given times."""
    formatter = JsonFormatter(service)
    with path.open("a") as out:
        for created, message, extra in lines:
            record = logging.LogRecord("x", logging.INFO, __file__, 1, message, None, None)
            record.created = created
            record.__dict__.update(extra)
            out.write(formatter.format(record) + "\n")


async def client_for(module_env: dict, log_dir: Path | None) -> AsyncIterator[httpx.AsyncClient]:
    settings = ControllerSettings(
        **module_env,
        api_keys=["k-123"],
        engine_url="http://127.0.0.1:9",
        start_loops=False,
        log_dir=str(log_dir) if log_dir else None,
    )
    async with asgi_client(create_app(settings), **reads_with("k-123")) as client:
        yield client


@pytest.fixture
async def api(module_env: dict, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(module_env, tmp_path):
        yield client


async def submit(api: httpx.AsyncClient) -> str:
    accepted = await api.post(
        "/coordinate", json={"spec": inline_spec(), "inputs": {"n": 1}}, headers=KEY
    )
    assert accepted.status_code == 202
    return str(accepted.json()["run_id"])


async def test_a_runs_lines_from_every_file_merged_by_time(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    run, other = await submit(api), await submit(api)
    write_lines(tmp_path / "workflow-engine.log", "workflow-engine", [
        (100.0, "step claimed", {"run_id": run, "step_id": "a", "attempt": 1}),
        (100.3, "step succeeded", {"run_id": run, "step_id": "a", "attempt": 1}),
        (100.4, "step claimed", {"run_id": other, "step_id": "a", "attempt": 1}),
        (100.9, "run finished", {"run_id": run, "status": "SUCCEEDED"}),
    ])  # fmt: skip
    write_lines(tmp_path / "data-connector.log", "data-connector", [
        (100.1, "POST /api/v1/noop 200", {"run_id": run, "step_id": "a", "attempt": 1}),
        (100.5, "POST /api/v1/noop 200", {"run_id": run, "step_id": "b", "attempt": 1}),
    ])  # fmt: skip
    with (tmp_path / "data-connector.log").open("a") as out:
        out.write(f'Traceback (most recent call last): "run_id":"{run}" not JSON\n')
        out.write(f'{{"run_id":"{run}", cut short by a kill\n')
    (tmp_path / "notes.txt").write_text(f'{{"run_id":"{run}"}}\n')  # not a *.log

    found = (await api.get(f"/workflows/{run}/logs")).json()
    assert [(line["service"], line["message"]) for line in found["lines"]] == [
        ("workflow-engine", "step claimed"),
        ("data-connector", "POST /api/v1/noop 200"),
        ("workflow-engine", "step succeeded"),
        ("data-connector", "POST /api/v1/noop 200"),
        ("workflow-engine", "run finished"),
    ]
    assert found["total"] == 5 and not found["truncated"]
    assert found["files"] == ["data-connector.log", "workflow-engine.log"]
    assert found["lines"][-1]["status"] == "SUCCEEDED"  # a line's own fields pass through
    one_step = (await api.get(f"/workflows/{run}/logs", params={"step": "b"})).json()
    assert [line["step_id"] for line in one_step["lines"]] == ["b"]
    last = (await api.get(f"/workflows/{run}/logs", params={"limit": 2})).json()
    assert [line["message"] for line in last["lines"]] == ["POST /api/v1/noop 200", "run finished"]
    assert last["truncated"] and last["total"] == 5


async def test_unknown_runs_bad_limits_and_no_log_folder_are_clear_errors(
    api: httpx.AsyncClient, module_env: dict, tmp_path: Path
) -> None:
    for missing in (str(uuid.uuid4()), "not-a-run"):
        answer = await api.get(f"/workflows/{missing}/logs")
        assert answer.status_code == 404 and answer.json()["retryable"] is False
    run = await submit(api)
    bad = await api.get(f"/workflows/{run}/logs", params={"limit": 0})
    assert bad.status_code == 422 and "limit" in bad.json()["message"]
    wrong_key = await api.get(f"/workflows/{run}/logs", headers={"Authorization": "Bearer no"})
    assert wrong_key.status_code == 401
    async for unset in client_for(module_env, None):
        refused = await unset.get(f"/workflows/{run}/logs")
        assert refused.status_code == 409
        assert refused.json()["error"] == "logs_not_collected"
        assert "CONTROLLER_LOG_DIR" in refused.json()["message"]
    async for gone in client_for(module_env, tmp_path / "nowhere"):
        assert (await gone.get(f"/workflows/{run}/logs")).status_code == 409
