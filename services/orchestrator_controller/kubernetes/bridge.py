"""Building the controller's informers, one per kind, from its settings: each kind (what to do
on a change) connected to the controller's definitions, runs, bindings, agents, policies or
live settings, in an `Informer` (kubernetes/informer.py) that lists and watches it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from kubernetes.client import ApiClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.definitions import service as definitions
from services.orchestrator_controller.kubernetes.agents import AgentResources
from services.orchestrator_controller.kubernetes.configs import ConfigResources
from services.orchestrator_controller.kubernetes.informer import Informer
from services.orchestrator_controller.kubernetes.models import (
    ModelResources,
    registry_version_resolver,
)
from services.orchestrator_controller.kubernetes.orchestrators import OrchestratorResources
from services.orchestrator_controller.kubernetes.watcher import (
    WorkflowResourceWatcher,
    create_api_client,
    in_cluster_namespace,
)
from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.models import WorkflowRun
from shared.live_log import publish_log_level
from shared.spec.models import WorkflowSpec


def build_watcher(
    settings: ControllerSettings,
    sessionmaker: async_sessionmaker,
    api_client: ApiClient | None = None,
    **options: Any,
) -> WorkflowResourceWatcher:
    """A watcher that registers resources as definitions and reports their last runs."""

    async def register(spec: dict[str, Any]) -> None:
        parsed = WorkflowSpec.model_validate(spec)  # refusals become Ready=False on the resource
        async with sessionmaker() as session, session.begin():
            await definitions.register(session, spec=parsed, source="kubernetes", replace=True)

    async def last_run(workflow_name: str) -> dict[str, Any] | None:
        async with sessionmaker() as session:
            run = (
                await session.execute(
                    select(WorkflowRun)
                    .where(WorkflowRun.workflow_name == workflow_name)
                    .order_by(WorkflowRun.created_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        if run is None:
            return None
        return {
            "run_id": run.id,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "error": run.error,
        }

    options.setdefault("resync_s", settings.workflow_resync_s)
    return WorkflowResourceWatcher(
        api_client or create_api_client(), _namespace(settings), register, last_run, **options
    )


def _namespace(settings: ControllerSettings) -> str:
    return settings.kubernetes_namespace or in_cluster_namespace() or "default"


def build_model_sync(
    settings: ControllerSettings,
    sessionmaker: async_sessionmaker,
    api_client: ApiClient | None = None,
) -> Informer:
    """The informer binding models as the namespace's Model resources say (leader only)."""
    resolve = (
        registry_version_resolver(settings.mlflow_tracking_uri)
        if settings.mlflow_tracking_uri
        else None
    )
    return Informer(
        api_client or create_api_client(),
        _namespace(settings),
        ModelResources(sessionmaker, resolve_version=resolve),
        resync_s=settings.model_resync_s,
    )


def build_agent_sync(
    settings: ControllerSettings,
    sessionmaker: async_sessionmaker,
    http: httpx.AsyncClient,
    api_client: ApiClient | None = None,
) -> Informer:
    """The informer registering the agents the namespace's Agent resources name (leader
    only); each resync asks the agents for their actions again."""
    agents = AgentResources(
        sessionmaker,
        http,
        token=settings.service_token.get_secret_value(),
        allow_private_hosts=settings.agent_allow_private_hosts,
        probe_timeout_s=settings.agent_probe_timeout_s,
    )
    return Informer(
        api_client or create_api_client(),
        _namespace(settings),
        agents,
        resync_s=settings.agent_resync_s,
    )


def build_orchestrator_sync(
    settings: ControllerSettings,
    policies: Policies,
    api_client: ApiClient | None = None,
    *,
    is_leader: Callable[[], bool] | None = None,
) -> Informer:
    """The informer putting the namespace's Orchestrator resources in force in `policies`,
    over the configuration the settings give (CONTROLLER_ORCHESTRATORS over the defaults); it
    writes their status only while `is_leader()` (None: always, a single replica)."""
    return Informer(
        api_client or create_api_client(),
        _namespace(settings),
        OrchestratorResources(policies, settings.orchestrators),
        resync_s=settings.orchestrator_resync_s,
        is_leader=is_leader,
    )


def build_config_sync(
    settings: ControllerSettings,
    api_client: ApiClient | None = None,
    *,
    is_leader: Callable[[], bool] | None = None,
    sessionmaker: async_sessionmaker | None = None,
) -> Informer:
    """The informer putting the namespace's Config resource in force in `settings.live`, over
    the live settings the environment gives (every replica; the leader alone writes the
    status, and the log level for the engines and agents when given the `sessionmaker`)."""
    publish = None
    if sessionmaker is not None:

        async def publish(level: str | None, source: str | None) -> None:
            async with sessionmaker() as session, session.begin():
                await publish_log_level(session, level, source)

    return Informer(
        api_client or create_api_client(),
        _namespace(settings),
        ConfigResources(settings.live, publish=publish),
        resync_s=settings.config_resync_s,
        is_leader=is_leader,
    )
