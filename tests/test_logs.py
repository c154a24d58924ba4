"""shared/logs.py: JSON lines with the run/step context, secrets masked, one line per request."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import pytest
from pydantic import SecretStr

from agents.base.settings import AgentSettings
from agents.data_scheduler.app import create_app as create_scheduler
from services.orchestrator_controller.settings import ApiKeySpec, ControllerSettings
from shared.logs import bind, configure_logging, log_context, secret_values
from tests.conftest import CREDENTIALS, asgi_client, service_auth

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
log = logging.getLogger("tests.logs")


def lines(err: str) -> list[dict[str, Any]]:
    """The JSON lines among what was written to stderr."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_a_line_has_its_context_and_every_secret_is_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ControllerSettings(
        api_keys=[SecretStr("plain-k3y-0001"), ApiKeySpec(id="ci", key=SecretStr("scoped-k3y-2"))],
        service_token=SecretStr("svc-t0ken-abc"),
        database_url="postgresql+asyncpg://app:pg-pa55word@db:5432/platform",
    )
    configure_logging("orchestrator-controller", "INFO", secrets=secret_values(settings))
    with log_context(run_id="3f2c", step_id="fetch", attempt=2):
        log.info("calling with svc-t0ken-abc", extra={"url": "http://x/?k=plain-k3y-0001"})
        try:
            raise ValueError("refused scoped-k3y-2 at postgresql://app:pg-pa55word@db")
        except ValueError:
            log.exception("attempt failed")
    log.info("outside", extra={"run_id": "given", "rows": 3})
    log.debug("not at INFO")
    err = capsys.readouterr().err
    for secret in ("svc-t0ken-abc", "plain-k3y-0001", "scoped-k3y-2", "pg-pa55word"):
        assert secret not in err
    calling, failed, outside = lines(err)
    assert calling["message"] == "calling with ***" and calling["url"] == "http://x/?k=***"
    assert TS.match(calling["ts"]) and calling["level"] == "INFO"
    assert calling["service"] == "orchestrator-controller" and calling["logger"] == "tests.logs"
    assert (calling["run_id"], calling["step_id"], calling["attempt"]) == ("3f2c", "fetch", 2)
    assert failed["level"] == "ERROR" and failed["step_id"] == "fetch"
    assert failed["exc"].startswith("Traceback") and "ValueError: refused *** at" in failed["exc"]
    # The block is over: no step; a run given on the call itself is kept, extras too.
    assert outside["run_id"] == "given" and "step_id" not in outside and outside["rows"] == 3
    assert "exc" not in outside


async def test_each_task_logs_its_own_step(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("workflow-engine", "INFO")

    async def step(name: str, wait_s: float) -> None:
        bind(run_id="r1", step_id=name, attempt=1)
        await asyncio.sleep(wait_s)  # the other task binds meanwhile
        log.info("done %s", name)

    await asyncio.gather(step("a", 0.02), step("b", 0.0))
    log.info("the caller")
    done = {line["message"]: line for line in lines(capsys.readouterr().err)}
    assert done["done a"]["step_id"] == "a" and done["done b"]["step_id"] == "b"
    assert "run_id" not in done["the caller"]


def test_log_level_comes_from_the_environment_and_a_bad_one_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    configure_logging("data-merger")
    log.info("quiet")
    log.warning("loud")
    assert [line["message"] for line in lines(capsys.readouterr().err)] == ["loud"]
    with pytest.raises(ValueError, match="LOG_LEVEL='chatty' is not a log level"):
        configure_logging("data-merger", "chatty")


async def test_an_agent_logs_each_call_with_the_step_the_engine_named(
    common_env: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = next(iter(CREDENTIALS))
    monkeypatch.setenv(credential, "cr3dential-value-77")
    app = create_scheduler(AgentSettings(**common_env))
    step = {"X-Run-Id": "0b7e-run", "X-Step-Id": "plan", "X-Attempt": "3"}
    async with asgi_client(app) as client:
        started = time.perf_counter()
        ok = await client.post(
            "/api/v1/validate", json={"cron": "0 * * * *"}, headers={**service_auth(), **step}
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert (await client.get("/health")).status_code == 200
        missing = await client.post("/api/v1/nothing", json={}, headers=service_auth())
        logging.getLogger("agents.x").warning("sent cr3dential-value-77 to the source")
    assert ok.status_code == 200 and missing.status_code == 404
    err = capsys.readouterr().err
    assert "cr3dential-value-77" not in err
    found = [line for line in lines(err) if line["logger"] == "http.request"]
    call, refused = found  # nothing for /health: probes have a line only when they fail
    assert call["service"] == "data-scheduler" and call["message"].startswith("POST /api/v1/")
    assert (call["run_id"], call["step_id"], call["attempt"]) == ("0b7e-run", "plan", 3)
    assert call["status"] == 200 and call["method"] == "POST"
    assert 0 < call["duration_ms"] <= elapsed_ms  # the time of this call, measured inside it
    assert refused["status"] == 404 and refused["level"] == "WARNING"
    assert "run_id" not in refused
