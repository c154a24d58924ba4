"""Connecting the Workflow-resource watcher to the controller's definitions and runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from kubernetes.client import ApiClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.definitions import service as definitions
from services.orchestrator_controller.kubernetes.agents import AgentResourceSync
from services.orchestrator_controller.kubernetes.configs import ConfigResourceSync
from services.orchestrator_controller.kubernetes.models import (
    ModelResourceSync,
    registry_version_resolver,
)
from services.orchestrator_controller.kubernetes.orchestrators import OrchestratorResourceSync
from services.orchestrator_controller.kubernetes.watcher import (
    WorkflowResourceWatcher,
    create_api_client,
    in_cluster_namespace,
)
from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.models import WorkflowRun
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

    namespace = settings.kubernetes_namespace or in_cluster_namespace()
    return WorkflowResourceWatcher(
        api_client or create_api_client(), namespace, register, last_run, **options
    )


def build_model_sync(
    settings: ControllerSettings,
    sessionmaker: async_sessionmaker,
    api_client: ApiClient | None = None,
) -> ModelResourceSync:
    """The loop binding models as the namespace's Model resources say."""
    resolve = (
        registry_version_resolver(settings.mlflow_tracking_uri)
        if settings.mlflow_tracking_uri
        else None
    )
    return ModelResourceSync(
        api_client or create_api_client(),
        settings.kubernetes_namespace or in_cluster_namespace() or "default",
        sessionmaker,
        resolve_version=resolve,
        interval_s=settings.model_resync_s,
    )


def build_agent_sync(
    settings: ControllerSettings,
    sessionmaker: async_sessionmaker,
    http: httpx.AsyncClient,
    api_client: ApiClient | None = None,
) -> AgentResourceSync:
    """The loop registering the agents the namespace's Agent resources name."""
    return AgentResourceSync(
        api_client or create_api_client(),
        settings.kubernetes_namespace or in_cluster_namespace() or "default",
        sessionmaker,
        http,
        token=settings.service_token.get_secret_value(),
        allow_private_hosts=settings.agent_allow_private_hosts,
        probe_timeout_s=settings.agent_probe_timeout_s,
        interval_s=settings.agent_resync_s,
    )


def build_orchestrator_sync(
    settings: ControllerSettings,
    policies: Policies,
    api_client: ApiClient | None = None,
    *,
    is_leader: Callable[[], bool] | None = None,
) -> OrchestratorResourceSync:
    """The loop putting the namespace's Orchestrator resources in force in `policies`, over
    the configuration the settings give (CONTROLLER_ORCHESTRATORS over the defaults); it
    writes their status only while `is_leader()` (None: always, a single replica)."""
    return OrchestratorResourceSync(
        api_client or create_api_client(),
        settings.kubernetes_namespace or in_cluster_namespace() or "default",
        policies,
        settings.orchestrators,
        interval_s=settings.orchestrator_resync_s,
        is_leader=is_leader,
    )


def build_config_sync(
    settings: ControllerSettings,
    api_client: ApiClient | None = None,
    *,
    is_leader: Callable[[], bool] | None = None,
) -> ConfigResourceSync:
    """The loop putting the namespace's Config resource in force in `settings.live`, over the
    live settings the environment gives (every replica; the leader alone writes the status)."""
    return ConfigResourceSync(
        api_client or create_api_client(),
        settings.kubernetes_namespace or in_cluster_namespace() or "default",
        settings.live,
        interval_s=settings.config_resync_s,
        is_leader=is_leader,
    )
