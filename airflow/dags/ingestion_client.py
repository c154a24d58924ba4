"""Triggering a platform workflow from Airflow and waiting for it (standard library only).

Configuration comes from the environment of the Airflow workers:
  INGESTION_CONTROLLER_URL   base URL of the orchestrator controller (http://127.0.0.1:8080)
  INGESTION_API_KEY          bearer API key accepted by the controller (dev-api-key)
  INGESTION_POLL_SECONDS     how often the run's status is read (10)
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "COMPENSATED", "COMPENSATION_FAILED"})


class RunFailed(RuntimeError):
    """The platform run ended in a state other than SUCCEEDED (the Airflow task fails)."""


@dataclass
class Controller:
    url: str = field(
        default_factory=lambda: os.environ.get("INGESTION_CONTROLLER_URL", "http://127.0.0.1:8080")
    )
    api_key: str = field(default_factory=lambda: os.environ.get("INGESTION_API_KEY", "dev-api-key"))
    poll_s: float = field(
        default_factory=lambda: float(os.environ.get("INGESTION_POLL_SECONDS", "10"))
    )
    request_timeout_s: float = 30.0

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **headers: str
    ) -> tuple[int, dict[str, Any]]:
        """One JSON request; HTTP errors come back as (status, body) rather than raising."""
        request = urllib.request.Request(
            self.url.rstrip("/") + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                **headers,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout_s) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {}
            return exc.code, payload


def idempotency_key(dag_id: str, logical_date: datetime | None, run_id: str) -> str:
    """The same key for every try of one DAG run, so a retried task reuses its run."""
    when = logical_date.isoformat() if logical_date is not None else run_id
    return f"airflow:{dag_id}:{when}"


def trigger(
    controller: Controller, workflow: str, key: str, inputs: dict[str, Any] | None = None
) -> str:
    """POST /coordinate; the run id (the same one again for a repeated key)."""
    status, body = controller.call(
        "POST",
        "/coordinate",
        {"workflow": workflow, "inputs": inputs or {}},
        **{"Idempotency-Key": key},
    )
    if status not in (200, 202):
        raise RuntimeError(f"/coordinate refused {workflow!r}: {status} {body}")
    return str(body["run_id"])


def wait(controller: Controller, run_id: str, timeout_s: float | None = None) -> dict[str, Any]:
    """Poll the run until it ends; the run as GET /workflows/{id} shows it."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status, run = controller.call("GET", f"/workflows/{run_id}")
        if status == 200 and run.get("status") in TERMINAL:
            return run
        if status not in (200, 502, 503, 504):
            raise RuntimeError(f"reading run {run_id} failed: {status} {run}")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {run.get('status')} after {timeout_s}s")
        time.sleep(controller.poll_s)


def coordinate_and_wait(
    workflow: str,
    key: str,
    *,
    inputs: dict[str, Any] | None = None,
    controller: Controller | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Start (or rejoin) the run for `key`, wait for it, and raise RunFailed unless it succeeded."""
    controller = controller or Controller()
    run_id = trigger(controller, workflow, key, inputs)
    run = wait(controller, run_id, timeout_s)
    if run["status"] != "SUCCEEDED":
        detail = run.get("error") or run.get("status_reason") or ""
        raise RunFailed(f"run {run_id} of {workflow!r} ended {run['status']}: {detail}")
    return {"run_id": run_id, "status": run["status"]}
