"""Starting the eight services (and a sample file server) as real uvicorn processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import AGENT_NAMES

ROOT = Path(__file__).resolve().parents[1]
AGENT_MODULES = {name: name.replace("-", "_") for name in AGENT_NAMES}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Ports:
    controller: int = 8080
    engine: int = 8000
    samples: int = 8199
    agents: dict[str, int] = field(
        default_factory=lambda: {name: 8101 + i for i, name in enumerate(AGENT_NAMES)}
    )

    @classmethod
    def random(cls) -> Ports:
        """Free ports for everything (tests run beside whatever else is listening)."""
        return cls(
            controller=free_port(),
            engine=free_port(),
            samples=free_port(),
            agents={name: free_port() for name in AGENT_NAMES},
        )

    def agent_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in self.agents.items()}


@dataclass
class Service:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # Set by stop(): the exit was asked for, a supervisor must not restart it.
    stopped: bool = False
    # Out of the terminal's process group (the launcher): Ctrl-C reaches the launcher only,
    # which stops the services in order; otherwise the services' own exits on Ctrl-C would
    # look like crashes to the supervisor. Tests keep them in theirs, so that killing the
    # test run's group kills them too.
    own_session: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Launch uvicorn for this service, logging to its file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.stopped = False
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"{self.module}:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )
        log.close()  # the child has its own copy

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 15.0) -> None:
        """Stop the process on purpose (SIGTERM, then SIGKILL if it lingers)."""
        self.stopped = True
        self._end(sig, wait_s)

    def _end(self, sig: int, wait_s: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to clean up, and a supervisor restarts it."""
        self._end(signal.SIGKILL, wait_s=5.0)

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        """Block until GET /health answers 200 (or 'degraded'), or raise."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not healthy after {timeout_s}s: {last}")


def platform_env(
    *,
    database_url: str,
    redis_url: str,
    ports: Ports,
    data_root: Path,
    service_token: str = "dev-service-token",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every service gets."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SERVICE_TOKEN": service_token,
        "DATA_ROOT": str(data_root),
        "AGENT_URLS": json.dumps(ports.agent_urls()),
        "CONTROLLER_ENGINE_URL": f"http://127.0.0.1:{ports.engine}",
        "AGENT_ALLOWED_ROOTS": json.dumps([str(ROOT / "samples"), str(data_root)]),
        "AGENT_ALLOW_PRIVATE_HOSTS": json.dumps(["127.0.0.1", "localhost"]),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


def platform_services(env: dict[str, str], ports: Ports, log_dir: Path) -> list[Service]:
    """Every agent (AGENT_NAMES), the engine and the controller (in start order)."""
    services = [
        Service(name, f"agents.{module}.app", ports.agents[name], env, log_dir / f"{name}.log")
        for name, module in AGENT_MODULES.items()
    ]
    services.append(
        Service(
            "workflow-engine",
            "services.workflow_engine.app",
            ports.engine,
            env,
            log_dir / "workflow-engine.log",
        )
    )
    services.append(
        Service(
            "orchestrator-controller",
            "services.orchestrator_controller.app",
            ports.controller,
            env,
            log_dir / "orchestrator-controller.log",
        )
    )
    return services


def sample_server(
    port: int, log_dir: Path, *, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """Serve samples/test over HTTP on 127.0.0.1 (the test workflow fetches from it)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(ROOT / "samples" / "test"),
        ],
        stdout=(log_dir / "samples.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=own_session,  # as Service.own_session
    )
