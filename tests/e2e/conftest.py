"""The whole platform as real uvicorn processes on random ports, on the test schema."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher.processes import Ports, Service, platform_env, platform_services, sample_server
from tests.conftest import (
    CREDENTIALS,
    DATABASE_URL,
    REDIS_URL,
    SERVICE_TOKEN,
    fresh_schema,
    target_schema,
)
from tests.lineage_receiver import LineageReceiver, lineage_receiver
from tests.otlp_receiver import Receiver

API_KEY = "e2e-api-key"
ORDERS_TOKEN = "e2e-0rders-t0ken-5ecret-91f2"


@dataclass
class Platform:
    ports: Ports
    env: dict[str, str]
    services: dict[str, Service]
    data_root: Path
    stream_prefix: str

    @property
    def controller(self) -> str:
        return f"http://127.0.0.1:{self.ports.controller}"

    @property
    def engine(self) -> Service:
        return self.services["workflow-engine"]

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.controller,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )

    def samples_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports.samples}/{path}"

    def wait_for_run(self, run_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll the run until it reaches a terminal status."""
        deadline = time.monotonic() + timeout_s
        with self.api() as api:
            while time.monotonic() < deadline:
                run = api.get(f"/workflows/{run_id}").json()
                if run["status"] in (
                    "SUCCEEDED",
                    "FAILED",
                    "CANCELLED",
                    "COMPENSATED",
                    "COMPENSATION_FAILED",
                ):
                    return run
                time.sleep(0.2)
        raise TimeoutError(f"run {run_id} still {run['status']} after {timeout_s}s")


@pytest.fixture(scope="session")
def e2e_schema() -> Iterator[str]:
    """A schema of its own: the running engine must not claim other tests' steps."""
    yield from fresh_schema()


@contextmanager
def launch(
    db_schema: str,
    stream_prefix: str,
    data_root: Path,
    log_dir: Path,
    healthy_timeout_s: float = 120,
    **extra: str,
) -> Iterator[Platform]:
    """Every agent (AGENT_NAMES), engine and controller on `db_schema`, stopped at the end."""
    ports = Ports.random()
    env = platform_env(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        ports=ports,
        data_root=data_root,
        service_token=SERVICE_TOKEN,
        extra={
            "DB_SCHEMA": db_schema,
            "AGENT_TARGET_SCHEMAS": json.dumps([target_schema(db_schema)]),
            "STREAM_PREFIX": stream_prefix,
            "CONTROLLER_API_KEYS": f'["{API_KEY}"]',
            "CONTROLLER_HEALTH_INTERVAL_S": "1",
            "CONTROLLER_HANDOFF_INTERVAL_S": "1",
            "ENGINE_LEASE_SECONDS": "3",
            "ENGINE_POLL_INTERVAL_S": "0.5",
            # Credentials the workflows reference by name (agents read them from their env).
            "E2E_STREAM_REDIS_URL": REDIS_URL,
            "E2E_ORDERS_TOKEN": ORDERS_TOKEN,
            "AGENT_CREDENTIALS": json.dumps(CREDENTIALS),
            # The seed schedules would start runs of their own in the middle of the tests.
            "CONTROLLER_SEED_SCHEDULES": "false",
            # GET /workflows/{id}/logs reads the services' files there.
            "CONTROLLER_LOG_DIR": str(log_dir),
            **extra,
        },
    )
    samples = sample_server(ports.samples, log_dir)
    services = platform_services(env, ports, log_dir)
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_healthy(timeout_s=healthy_timeout_s)
        yield Platform(ports, env, {s.name: s for s in services}, data_root, stream_prefix)
    finally:
        for service in reversed(services):
            service.stop()
        samples.terminate()
        try:
            samples.wait(5)
        except subprocess.TimeoutExpired:
            samples.kill()


@pytest.fixture(scope="session")
def platform(
    e2e_schema: str, stream_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The platform, started once for the e2e tests."""
    with launch(
        e2e_schema,
        stream_prefix,
        tmp_path_factory.mktemp("e2e_data"),
        tmp_path_factory.mktemp("e2e_logs"),
    ) as running:
        yield running


@dataclass(frozen=True)
class Observed:
    """A platform exporting its traces and its OpenLineage events to receivers of the tests."""

    platform: Platform
    traces: Receiver
    lineage: LineageReceiver


@pytest.fixture(scope="session")
def observed(stream_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """One platform for the tracing and the lineage tests: each launch costs seconds of imports
    in nine processes, and neither set of tests minds the other's runs (each looks at its own)."""
    traces = Receiver()
    threading.Thread(target=traces.server.serve_forever, daemon=True).start()
    schemas = fresh_schema()
    schema = next(schemas)
    try:
        with (
            lineage_receiver() as (lineage, url),
            launch(
                schema,
                f"{stream_prefix}observed:",
                tmp_path_factory.mktemp("observed_data"),
                tmp_path_factory.mktemp("observed_logs"),
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{traces.port}",
                OTEL_BSP_SCHEDULE_DELAY="200",
                OPENLINEAGE_URL=url,
                OPENLINEAGE_API_KEY="e2e-lineage-key",
                OPENLINEAGE_NAMESPACE="e2e-ingestion",
            ) as platform,
        ):
            yield Observed(platform, traces, lineage)
    finally:
        next(schemas, None)
        traces.server.shutdown()
        traces.server.server_close()
