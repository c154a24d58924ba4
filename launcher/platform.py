"""The whole platform as one object: infrastructure, migrations, eight services, samples."""

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


@dataclass
class RunningPlatform:
    infra: Infrastructure
    ports: Ports
    env: dict[str, str]
    services: dict[str, Service]
    data_root: Path
    log_dir: Path

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
    )


@contextlib.contextmanager
def running_platform(
    var_dir: Path,
    *,
    ports: Ports | None = None,
    say: object = print,
    extra_env: dict[str, str] | None = None,
    models: bool = False,
) -> Iterator[RunningPlatform]:
    """Start everything, yield it, stop everything (services first, then embedded servers).

    With `models`, the agents load their models from a registry (trained first if empty).
    """
    ports = ports or Ports()
    infra = provide(var_dir)
    data_root = var_dir / "data"
    log_dir = var_dir / "logs"
    extra = dict(extra_env or {})
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
    samples = sample_server(ports.samples, log_dir)
    services = platform_services(env, ports, log_dir)
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_healthy()
            say(f"  {service.name:<24} {service.url}")  # type: ignore[operator]
        yield RunningPlatform(infra, ports, env, {s.name: s for s in services}, data_root, log_dir)
    finally:
        for service in reversed(services):
            service.stop()
        samples.terminate()
        samples.wait()
