"""The whole platform as one object: infrastructure, migrations, eight services, samples.

The services run under a supervisor (launcher/supervisor.py) that reports and restarts any
that exits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launcher.embedded import Infrastructure, provide
from launcher.models import ensure_models, registry_uri
from launcher.processes import (
    ROOT,
    Ports,
    Service,
    platform_env,
    platform_services,
    sample_server,
)
from launcher.supervisor import DEFAULT_RESTART, RestartPolicy, Supervisor


@dataclass
class RunningPlatform:
    infra: Infrastructure
    ports: Ports
    env: dict[str, str]
    services: dict[str, Service]
    data_root: Path
    log_dir: Path
    supervisor: Supervisor | None = None

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.controller}"


def migrate(env: dict[str, str]) -> None:
    """Apply the migrations in a child process with the platform's environment."""
    subprocess.run(
        [sys.executable, "-m", "shared.db.migrate"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C is the launcher's: no traceback from the child
    )


@contextlib.contextmanager
def running_platform(
    var_dir: Path,
    *,
    ports: Ports | None = None,
    say: object = print,
    extra_env: dict[str, str] | None = None,
    models: bool = False,
    restart: RestartPolicy | None = DEFAULT_RESTART,
) -> Iterator[RunningPlatform]:
    """Start everything, yield it, stop everything (services first, then embedded servers).

    With `models`, the agents load their models from a registry (trained first if empty).
    A service that exits is reported through `say` and restarted per `restart` (None: not).
    """
    ports = ports or Ports()
    infra = provide(var_dir)
    data_root = var_dir / "data"
    log_dir = var_dir / "logs"
    extra = dict(extra_env or {})
    # GET /workflows/{id}/logs reads the files the services write here.
    extra.setdefault("CONTROLLER_LOG_DIR", str(log_dir))
    if models:
        extra.setdefault("MLFLOW_TRACKING_URI", registry_uri(var_dir))
        ensure_models(extra["MLFLOW_TRACKING_URI"], say)  # type: ignore[arg-type]
    env = platform_env(
        database_url=infra.database_url,
        redis_url=infra.redis_url,
        ports=ports,
        data_root=data_root,
        extra=extra,
    )
    if infra.embedded:
        say(f"embedded {' and '.join(infra.embedded)} under {var_dir}")  # type: ignore[operator]
    migrate(env)
    samples = sample_server(ports.samples, log_dir, own_session=True)
    services = platform_services(env, ports, log_dir)
    supervisor = None
    try:
        for service in services:
            service.own_session = True
            service.start()
        for service in services:
            service.wait_healthy()
            say(f"  {service.name:<24} {service.url}")  # type: ignore[operator]
        if restart is not None:
            supervisor = Supervisor(services, say=say, policy=restart)  # type: ignore[arg-type]
            supervisor.start()
        yield RunningPlatform(
            infra, ports, env, {s.name: s for s in services}, data_root, log_dir, supervisor
        )
    finally:
        if supervisor is not None:
            supervisor.stop()  # first: no restart of what is being stopped
        for service in reversed(services):
            service.stop()
        samples.terminate()
        samples.wait()
