"""ingestctl, run as a real process (`python -m ingestctl`) against the running platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import API_KEY, Platform

ROOT = Path(__file__).resolve().parents[2]


def ingestctl(
    platform: Platform, *args: str, key: str | None = API_KEY
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INGESTCTL_URL": platform.controller}
    env.pop("INGESTCTL_API_KEY", None)
    if key is not None:
        env["INGESTCTL_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "ingestctl", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_run_wait_show_and_status(platform: Platform) -> None:
    remote = platform.samples_url("remote/orders_api.json")
    done = ingestctl(platform, "run", "test", "-i", f"remote_url={remote}", "--wait", "-o", "json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "SUCCEEDED" and len(run["steps"]) == 8
    shown = ingestctl(platform, "show", run["run_id"])  # the table view
    assert shown.returncode == 0 and "merge" in shown.stdout and "SUCCEEDED" in shown.stdout
    listed = json.loads(ingestctl(platform, "status", "--workflow", "test", "-o", "json").stdout)
    assert run["run_id"] in [item["run_id"] for item in listed["items"]]
    history = ingestctl(platform, "events", "--run", run["run_id"], "--follow")  # ends with it
    assert history.returncode == 0, history.stderr
    assert "workflow.started" in history.stdout and "workflow.completed" in history.stdout
    recent = ingestctl(platform, "events", "--last", "5", "-o", "json").stdout.splitlines()
    assert len(recent) == 5 and all("sequence" in json.loads(line) for line in recent)
    agents = json.loads(ingestctl(platform, "agents", "-o", "json").stdout)
    assert {a["agent"] for a in agents["agents"]} == set(platform.ports.agents)
    dataset = run["inputs"]["dataset"]
    loads = json.loads(ingestctl(platform, "datasets", "loads", dataset, "-o", "json").stdout)
    assert run["run_id"] in [load["run_id"] for load in loads["loads"]]
    table = ingestctl(platform, "datasets", "versions", dataset)  # the table view
    assert table.returncode == 0 and f"versions of {dataset}" in table.stdout, table.stderr
    listed = ingestctl(platform, "datasets", "list", "-o", "json").stdout
    assert dataset in [d["dataset"] for d in json.loads(listed)]
    unknown = ingestctl(platform, "datasets", "loads", "no-such-dataset")
    assert unknown.returncode == 1 and "no load of dataset" in unknown.stderr


def test_schedules_list_and_trigger_now(platform: Platform) -> None:
    body = {
        "name": "cli-trigger",
        "workflow": "test",
        "cron": "0 0 1 1 *",
        "inputs": {"remote_url": platform.samples_url("remote/orders_api.json")},
    }
    with platform.api() as api:
        assert api.post("/schedules", json=body).status_code == 201
    listed = json.loads(ingestctl(platform, "schedules", "-o", "json").stdout)
    assert "cli-trigger" in [item["name"] for item in listed["items"]]
    fired = ingestctl(platform, "schedules", "trigger", "cli-trigger")
    assert fired.returncode == 0, fired.stderr
    run = platform.wait_for_run(json.loads(fired.stdout)["run_id"])
    assert run["status"] == "SUCCEEDED" and run["workflow"] == "test"
    missing = ingestctl(platform, "schedules", "trigger", "no-such-schedule")
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr


def test_a_failed_run_exits_1_and_errors_are_clear(platform: Platform) -> None:
    missing = platform.samples_url("remote/no-such-file.json")  # a 404: fails at once
    failed = ingestctl(platform, "run", "test", "-i", f"remote_url={missing}", "--wait")
    assert failed.returncode == 1 and "FAILED" in failed.stdout, (failed.stdout, failed.stderr)
    failed_id = json.loads(ingestctl(platform, "status", "-o", "json").stdout)["items"][0]["run_id"]
    retried = ingestctl(platform, "retry", failed_id)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["retry_of"] == failed_id
    no_key = ingestctl(platform, "status", key=None)
    assert no_key.returncode == 1 and "HTTP 401" in no_key.stderr and "API_KEY" in no_key.stderr
    unknown = ingestctl(platform, "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr
    bad_input = ingestctl(platform, "run", "test", "-i", "n0pe")
    assert bad_input.returncode == 1 and "key=value" in bad_input.stderr
    assert "Traceback" not in no_key.stderr + unknown.stderr + bad_input.stderr


def test_a_config_file_gives_the_url_and_key_and_definitions_show_prints_yaml(
    platform: Platform, tmp_path: Path
) -> None:
    config = tmp_path / "ingestctl.yaml"
    config.write_text(f"url: {platform.controller}\napi_key: {API_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTCTL_")}
    env["INGESTCTL_CONFIG"] = str(config)
    script = Path(sys.executable).parent / "ingestctl"  # the console script of the project
    shown = subprocess.run(
        [str(script), "definitions", "show", "test"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    import yaml

    spec = yaml.safe_load(shown.stdout)
    assert spec["name"] == "test" and len(spec["steps"]) == 8
    # What `show` prints, `apply` takes back (sent as YAML): the same content, nothing new.
    saved = tmp_path / "test.yaml"
    saved.write_text(shown.stdout)
    applied = subprocess.run(
        [str(script), "definitions", "apply", "-f", str(saved)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["version"] == spec["version"]
    config.write_text("url: x\npassword: y\n")
    bad = subprocess.run(
        [sys.executable, "-m", "ingestctl", "status"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown keys password" in bad.stderr
