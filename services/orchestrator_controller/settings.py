"""Controller settings (env prefix CONTROLLER_)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.orchestrator_controller.lineage.settings import LineageSettings
from services.orchestrator_controller.policies.config import OrchestratorsConfig
from shared.auth import SCOPES, ApiKey, Scope, key_id
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from services.orchestrator_controller.live.settings import LiveConfig

DEV_API_KEY = "dev-api-key"


class ApiKeySpec(BaseModel):
    """A key with an id (in logs and run records) and the scopes it grants."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="non-secret name")
    key: SecretStr = Field(description="the bearer token itself")
    scopes: list[Scope] = Field(default_factory=lambda: list(SCOPES), description="its rights")


class ControllerSettings(CommonSettings, LineageSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONTROLLER_", extra="ignore", populate_by_name=True
    )

    host: str = Field("127.0.0.1", description="bind address (used by the launcher)")
    port: int = Field(8080, description="HTTP port")
    engine_url: str = Field("http://127.0.0.1:8000", description="base URL of the engine")
    api_keys: list[SecretStr | ApiKeySpec] = Field(
        default_factory=list,
        description="bearer API keys (JSON list): a plain string has every scope; an object "
        '{"id", "key", "scopes": ["read", "submit", "admin"]} only its own. Several may be '
        f"valid at once (rotation). In development with none set, {DEV_API_KEY!r} is accepted",
    )
    handoff_interval_s: float = Field(
        2.0, gt=0, description="how often runs the engine has not started are handed off again"
    )
    health_interval_s: float = Field(5.0, gt=0, description="agent health polling period")
    unclaimed_after_s: float = Field(
        30.0,
        gt=0,
        description="an admitted run no engine has started after this long says so in its "
        "status_reason",
    )
    relay_lag_warn_s: float = Field(
        30.0, gt=0, description="/health says the relay is lagging past this event age"
    )
    health_timeout_s: float = Field(2.0, gt=0, description="timeout of one agent health check")
    register_builtin_workflows: bool = Field(
        True, description="register the workflows shipped in workflows/*.yaml at start"
    )
    start_loops: bool = Field(True, description="run background loops (off in some tests)")
    kubernetes_watch: bool = Field(False, description="watch Workflow custom resources")
    kubernetes_namespace: str = Field(
        "default", description="namespace of Workflow and Model resources"
    )
    # Leader election (services/orchestrator_controller/kubernetes/leader.py); the durations
    # are client-go's and controller-runtime's defaults (15 s, 10 s, 2 s).
    leader_election: bool = Field(
        True,
        description="with kubernetes_watch: elect one leader among the controller replicas "
        "through a coordination.k8s.io Lease; only it registers resources and writes their "
        "status (off: this replica does all of it, as a single replica)",
    )
    lease_name: str = Field(
        "ingestion-controller",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="name of the Lease the replicas elect their leader with (the chart sets "
        "its controller's name), in kubernetes_namespace",
    )
    lease_duration_s: float = Field(
        15.0,
        ge=1,
        le=3600,
        description="how long followers wait after the leader's last renewal they saw before "
        "taking the Lease over (leaseDurationSeconds)",
    )
    lease_renew_deadline_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a leader that has not renewed the Lease for this long steps down and stops "
        "its leader-only loops (shorter than lease_duration_s)",
    )
    lease_retry_period_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="how often the leader renews the Lease and followers try to take it",
    )
    pod_name: str | None = Field(
        None,
        validation_alias=AliasChoices("pod_name", "CONTROLLER_POD_NAME", "HOSTNAME"),
        description="this replica's pod name (CONTROLLER_POD_NAME, which the chart sets from "
        "the downward API, else HOSTNAME), the start of its leader-election identity",
    )
    # Changes to the custom resources arrive through watches at once; these periods are the
    # full re-list that also catches what a watch can miss (a delete during a disconnect).
    workflow_resync_s: float = Field(
        300.0, gt=0, le=3600, description="how often Workflow resources are re-listed in full"
    )
    model_resync_s: float = Field(
        15.0, gt=0, le=3600, description="how often Model resources are re-listed in full"
    )
    agent_resync_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="how often Agent resources are re-listed in full (each re-list asks the "
        "agents for their actions again)",
    )
    orchestrator_resync_s: float = Field(
        5.0, gt=0, le=3600, description="how often Orchestrator resources are re-listed in full"
    )
    config_resync_s: float = Field(
        5.0, gt=0, le=3600, description="how often Config resources are re-listed in full"
    )
    agent_probe_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="how long registering an agent waits for its GET /api/v1/actions",
    )
    # The agents' allowlist is the default: one list of the private hosts the platform may call
    # (the launcher and the chart set AGENT_ALLOW_PRIVATE_HOSTS for every service).
    agent_allow_private_hosts: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "agent_allow_private_hosts",
            "CONTROLLER_AGENT_ALLOW_PRIVATE_HOSTS",
            "AGENT_ALLOW_PRIVATE_HOSTS",
        ),
        description="private hosts, host:port or CIDRs a registered agent's base_url may point "
        "at (JSON list; CONTROLLER_AGENT_ALLOW_PRIVATE_HOSTS, else AGENT_ALLOW_PRIVATE_HOSTS); "
        "link-local and cloud-metadata addresses are refused always",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"),
        description="the model registry, to show each Model resource's version in its status",
    )
    orchestrators: OrchestratorsConfig = Field(
        default_factory=OrchestratorsConfig,
        description="JSON configuring the five orchestrators (api_manager, batch_manager, "
        "file_manager, ingestion_manager, stream_manager); fields left out keep the defaults "
        "in services/orchestrator_controller/policies/config.py",
    )
    admission_interval_s: float = Field(
        1.0, gt=0, description="how often runs waiting on a policy are re-evaluated"
    )
    schedule_tick_s: float = Field(1.0, gt=0, description="how often due schedules are fired")
    schedule_misfire_grace_s: float = Field(
        60.0,
        ge=0,
        description="a fire found later than this (controller down) counts as missed and "
        "follows the schedule's catch-up policy",
    )
    max_nesting_depth: int = Field(
        32,
        ge=2,
        le=256,
        description="deepest nesting of JSON objects and lists accepted in a spec's params, "
        "its input defaults and a run's inputs; deeper is a 422 before anything is stored",
    )
    max_spec_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="largest workflow spec accepted, in bytes of its stored (compact JSON) "
        "form, for a registered definition and an inline spec on /coordinate alike; larger "
        "is a 413 (spec_too_large) before anything is stored",
    )
    retention_days: float = Field(
        30.0,
        ge=0,
        validation_alias=AliasChoices(
            "retention_days", "CONTROLLER_RETENTION_DAYS", "PLATFORM_RETENTION_DAYS"
        ),
        description="days a finished run stays readable (with its steps, events and "
        "Idempotency-Keys) before it is deleted (PLATFORM_RETENTION_DAYS); 0 keeps every run",
    )
    retention_interval_s: float = Field(
        300.0, gt=0, description="how often finished runs past retention_days are deleted"
    )
    seed_schedules: bool = Field(
        True, description="create the four seed schedules at first start (never duplicated)"
    )
    log_dir: str | None = Field(
        None,
        description="folder holding every service's JSON-lines log (*.log, as the launcher "
        "writes them under var/logs) that GET /workflows/{id}/logs reads; unset (compose, "
        "Kubernetes: logs go to stdout and a collector) that endpoint answers 409",
    )

    # A cached_property, not a PrivateAttr: every request reads it, and pydantic's lookup of a
    # private attribute raises and catches an AttributeError on each read (1.6 % of the
    # controller's CPU under load, by py-spy).
    @functools.cached_property
    def live(self) -> LiveConfig:
        """The live settings in force (services/orchestrator_controller/live/settings.py): these
        values at first, then what a Config resource says. Read them there at each use."""
        from services.orchestrator_controller.live.settings import LiveConfig

        return LiveConfig(self)

    def accepted_api_keys(self) -> list[ApiKey]:
        """The keys the controller accepts, each with its id and scopes."""
        keys: list[ApiKey] = []
        for given in self.api_keys:
            if isinstance(given, ApiKeySpec):
                keys.append(ApiKey(given.id, given.key.get_secret_value(), frozenset(given.scopes)))
            elif secret := given.get_secret_value():
                keys.append(ApiKey(key_id(secret), secret, frozenset(SCOPES)))
        if not keys and self.environment == "development":
            keys = [ApiKey("dev", DEV_API_KEY, frozenset(SCOPES))]
        return keys
