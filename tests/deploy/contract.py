"""The runtime contract the deployment files must honour: commands, ports, variables."""

from __future__ import annotations

from shared.settings import AGENT_NAMES, AGENT_PORTS


def uvicorn(app: str, port: int) -> list[str]:
    return ["uvicorn", f"{app}:create_app", "--factory", "--host", "0.0.0.0", "--port", str(port)]


#: service (compose name, Helm component) -> (command, port)
SERVICES: dict[str, tuple[list[str], int]] = {
    "controller": (uvicorn("services.orchestrator_controller.app", 8080), 8080),
    "workflow-engine": (uvicorn("services.workflow_engine.app", 8000), 8000),
    **{
        name: (uvicorn(f"agents.{name.replace('-', '_')}.app", port), port)
        for name, port in AGENT_PORTS.items()
    },
}
MIGRATE_COMMAND = ["python", "-m", "shared.db.migrate"]
TRAIN_MODELS_COMMAND = ["python", "-m", "ml.train", "--if-missing"]
AGENTS = AGENT_NAMES

COMMON_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "SERVICE_TOKEN",
    "ENVIRONMENT",
    "DATA_ROOT",
    "AGENT_URLS",
    "LOG_LEVEL",
    "MLFLOW_TRACKING_URI",
}
CONTROLLER_VARIABLES = {
    "CONTROLLER_ENGINE_URL",
    "CONTROLLER_API_KEYS",
    "CONTROLLER_KUBERNETES_WATCH",
    "CONTROLLER_KUBERNETES_NAMESPACE",
}
ENGINE_VARIABLES = {"ENGINE_CONCURRENCY", "ENGINE_LEASE_SECONDS"}
AGENT_VARIABLES = {"AGENT_ALLOWED_ROOTS", "AGENT_ALLOW_PRIVATE_HOSTS"}
ALL_VARIABLES = COMMON_VARIABLES | CONTROLLER_VARIABLES | ENGINE_VARIABLES | AGENT_VARIABLES
SECRET_VARIABLES = {"DATABASE_URL", "REDIS_URL", "SERVICE_TOKEN", "CONTROLLER_API_KEYS"}
