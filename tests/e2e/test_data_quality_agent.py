"""The base-data-quality agent as another team would run it: a process of its own (uvicorn, as
docs/agent-protocol.md says), registered through `POST /agents`, named by the `standard`
workflow's quality step in place of the data-merger's `quality_check`. Its checks pass and the
run merges; a check that fails fails the run with the check's reason and merges nothing. The
conformance kit passes against it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.processes import ROOT, Service, free_port
from tests.conftest import SERVICE_TOKEN
from tests.e2e.conftest import Platform
from tests.e2e.test_workflows import dataset_rows, step

AGENT = "base-data-quality"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def quality_agent(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """base-data-quality in a process of its own, on the platform's database and DATA_ROOT."""
    log = tmp_path_factory.mktemp("quality_agent") / f"{AGENT}.log"
    service = Service(AGENT, "agents.base_data_quality.app", free_port(), platform.env, log)
    service.start()
    try:
        service.wait_healthy(timeout_s=60)
        yield service.url
    finally:
        service.stop()


@pytest.fixture(scope="module")
def registered(platform: Platform, quality_agent: str) -> Iterator[str]:
    """The agent registered as an admin would, with its actions read from the agent; removed
    again before its process stops (the platform is shared: its health monitor would report
    an agent left registered and gone as unreachable to the tests that follow)."""
    with platform.api() as api:
        response = api.post("/agents", json={"name": AGENT, "base_url": quality_agent})
    assert response.status_code == 201, response.text
    assert response.json()["actions"] == ["check", "classify", "noop"]
    yield quality_agent
    with platform.api() as api:
        assert api.delete(f"/agents/{AGENT}").status_code == 204


def standard_with_external_checks() -> dict[str, Any]:
    """The built-in `standard` workflow, its quality step on base-data-quality's `check`."""
    spec: dict[str, Any] = yaml.safe_load((ROOT / "workflows" / "standard.yaml").read_text())
    spec["name"] = "standard-external-quality"
    (quality,) = [s for s in spec["steps"] if s["id"] == "quality"]
    assert (quality["agent"], quality["action"]) == ("data-merger", "quality_check")
    quality.update(agent=AGENT, action="check")  # the same params: files, checks, collected
    return spec


def source(platform: Platform, orders: list[tuple[int, str | None, float]]) -> Path:
    folder = platform.data_root / "sources" / f"quality_{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    lines = ["order_id,email,amount"] + [f"{i},{e or ''},{a}" for i, e, a in orders]
    (folder / "orders.csv").write_text("\n".join(lines) + "\n")
    return folder


def run(platform: Platform, folder: Path, checks: dict[str, Any]) -> dict[str, Any]:
    inputs = {
        "source": {"kind": "file", "url": str(folder)},
        "dataset": f"ext_{folder.name}",
        "primary_key": ["order_id"],
        "checks": checks,
    }
    with platform.api() as api:
        response = api.post(
            "/coordinate", json={"spec": standard_with_external_checks(), "inputs": inputs}
        )
    assert response.status_code == 202, response.text
    return platform.wait_for_run(response.json()["run_id"], timeout_s=120)


ORDERS = [(1, "ada@example.com", 12.5), (2, "grace@example.com", 99.0), (3, None, 250.0)]


def test_a_quality_step_on_the_external_agent_passes_and_the_run_merges(
    platform: Platform, registered: str
) -> None:
    checks = {"row_count_min": 3, "not_null": ["order_id"], "unique": ["order_id"]}
    done = run(platform, source(platform, ORDERS), checks)
    assert done["status"] == "SUCCEEDED", done
    checked = step(done, "quality")
    assert checked["agent"] == AGENT and checked["action"] == "check"
    assert checked["output"]["passed"] is True and checked["output"]["rows"] == 3
    assert [(r["check"], r.get("column"), r["observed"]) for r in checked["output"]["results"]] == [
        ("row_count_min", None, 3),
        ("not_null", "order_id", 0),
        ("unique", "order_id", 0),
    ]
    rows = dataset_rows(step(done, "merge")["output"], "order_id")
    assert [(r["order_id"], r["email"], r["amount"]) for r in rows] == ORDERS


def test_a_failing_check_fails_the_run_with_its_reason(platform: Platform, registered: str) -> None:
    checks = {"not_null": ["email"], "ranges": {"amount": {"max": 100}}}
    done = run(platform, source(platform, ORDERS), checks)
    assert done["status"] == "FAILED", done
    failed = step(done, "quality")
    assert failed["status"] == "FAILED" and failed["attempts"] == 1  # not retryable
    assert failed["error"]["code"] == "quality_failed"
    assert failed["error"]["message"] == "quality checks failed: not_null email, range amount"
    assert "not_null email" in str(done["error"])
    assert step(done, "merge")["status"] == "SKIPPED"


def test_the_conformance_kit_passes_against_it(registered: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agents.conformance", registered, "--token", SERVICE_TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PASS health: {AGENT} is healthy" in done.stdout
    assert "PASS openapi.operations" in done.stdout
    assert "FAIL" not in done.stdout
