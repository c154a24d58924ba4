"""The Dockerfile and .dockerignore, read as a builder would; the health check actually run.

No Docker engine runs on these machines, so the image is not built here: the instructions are
parsed and checked, and the HEALTHCHECK command is executed against a local HTTP server.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.settings import AGENT_PORTS

from .conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
        if keyword == "FROM":
            break
    return args


def base_image(from_args: str) -> str:
    image = from_args.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m.group(1)], image)


def test_multi_stage_on_python_311_slim() -> None:
    build, runtime = stages()
    assert base_image(build[0][1]) == base_image(runtime[0][1]) == "python:3.11-slim"
    assert build[0][1].split()[-1] == "build"


def test_dependencies_come_from_the_lock_in_the_build_stage() -> None:
    build, _ = stages()
    runs = " ; ".join(args for keyword, args in build if keyword == "RUN")
    assert re.search(r"pip install \"?uv(==[\d.]+)?\"?", runs)
    assert "uv sync --frozen --no-dev --no-install-project" in runs
    copies = [args for keyword, args in build if keyword == "COPY"]
    assert copies[0].split() == ["pyproject.toml", "uv.lock", "./"]
    env = " ".join(args for keyword, args in build if keyword == "ENV")
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in env


def test_runtime_stage_is_non_root_without_compilers() -> None:
    _, runtime = stages()
    text = " ".join(args for _, args in runtime)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|apt-get install|uv sync)\b", text)
    assert ("COPY", "--from=build /app/.venv /app/.venv") in runtime
    (user,) = [args for keyword, args in runtime if keyword == "USER"]
    assert user == "10001:10001"
    assert any("--uid 10001" in args for keyword, args in runtime if keyword == "RUN")
    assert [k for k, _ in runtime].index("USER") > max(
        i for i, (k, _) in enumerate(runtime) if k in ("RUN", "COPY")
    )


def test_exposes_every_service_port() -> None:
    (exposed,) = [args for keyword, args in instructions() if keyword == "EXPOSE"]
    assert {int(p) for p in exposed.split()} == {8000, 8080, *AGENT_PORTS.values()}


def test_default_command_is_the_controller() -> None:
    (cmd,) = [args for keyword, args in instructions() if keyword == "CMD"]
    assert json.loads(cmd) == [
        "uvicorn",
        "services.orchestrator_controller.app:create_app",
        "--factory",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]


def healthcheck_command() -> list[str]:
    (check,) = [args for keyword, args in instructions() if keyword == "HEALTHCHECK"]
    options, _, command = check.partition("CMD ")
    assert "--interval" in options and "--timeout" in options
    parsed: list[str] = json.loads(command)
    return parsed


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def run_check(command: list[str], port: int) -> int:
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={"PORT": str(port)},
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_healthcheck_passes_on_200_and_fails_otherwise(
    health_server: tuple[int, type[_Health]],
) -> None:
    port, handler = health_server
    command = healthcheck_command()
    assert run_check(command, port) == 0
    handler.status = 503
    assert run_check(command, port) != 0
    handler.status = 200
    assert run_check(command, port + 1 if port < 65535 else port - 1) != 0  # nothing listening


def test_compose_healthcheck_behaves_the_same(health_server: tuple[int, type[_Health]]) -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["x-app"]["healthcheck"]["test"]
    assert command[0] == "CMD"
    port, handler = health_server
    assert run_check(command[1:], port) == 0
    handler.status = 500
    assert run_check(command[1:], port) != 0


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (anchored at the context root, ** spans dirs)."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a directory match covers its contents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern(pattern.lstrip("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negate
    return result


def test_dockerignore_keeps_code_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    kept = [
        "pyproject.toml",
        "uv.lock",
        "shared/settings.py",
        "services/orchestrator_controller/app.py",
        "agents/base/app.py",
        "workflows/test.yaml",
        "ml/train.py",
        "samples/test/orders_2026_11_a.csv",
        "shared/db/migrations/env.py",
        "README.md",
    ]
    dropped = [
        ".venv/bin/python",
        ".git/HEAD",
        "var/data/x.parquet",
        "shared/__pycache__/settings.cpython-311.pyc",
        "tests/deploy/test_dockerfile.py",
        ".env",
        ".mypy_cache/x",
        ".pytest_cache/v",
        "helm/ingestion-platform/Chart.yaml",
        "docker-compose.yml",
    ]
    assert [p for p in kept if ignored(p, patterns)] == []
    assert [p for p in dropped if not ignored(p, patterns)] == []


def test_runtime_has_no_shell_form_health_or_command() -> None:
    # Exec form: signals reach uvicorn directly and no shell is needed in the image.
    for keyword, args in instructions():
        if keyword == "CMD":
            assert args.startswith("[")
    assert shlex.split(DOCKERFILE.read_text().splitlines()[0]) == [
        "#",
        "syntax=docker/dockerfile:1",
    ]
