"""Configuration of the five orchestrators: defaults here, overrides in one settings field.

`CONTROLLER_ORCHESTRATORS` holds JSON shaped like `OrchestratorsConfig`, for example
`{"api_manager": {"host_concurrency": 2}, "batch_manager": {"max_concurrent_runs": 50}}`;
anything not given keeps the default below. Orchestrator resources (one per manager, read
by services/orchestrator_controller/kubernetes/orchestrators.py) override both, field by field;
services/orchestrator_controller/policies/resource.py translates between the two shapes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchManagerConfig(_Config):
    """The queue every run passes through: overall and per-workflow caps, priority order."""

    paused: bool = Field(
        False,
        description="admit no new run at all while true; waiting runs keep waiting",
    )
    max_concurrent_runs: int = Field(
        500, ge=1, description="admitted-but-unfinished runs allowed at once, all workflows"
    )
    max_concurrent_per_workflow: int = Field(
        200, ge=1, description="admitted-but-unfinished runs allowed at once per workflow name"
    )
    max_waiting_considered: int = Field(
        1000, ge=1, description="waiting runs looked at per admission round (priority order)"
    )


class ApiManagerConfig(_Config):
    """Per source host: a concurrency cap, a rate limit, and a pause after 429s/open circuits.

    The host of a run is the host of the first URL found among its inputs named in
    `host_inputs` (in that order); a run with none of them is only subject to the run caps.
    """

    paused: bool = Field(
        False,
        description="admit no new run of its kinds while true; waiting runs keep waiting",
    )
    kinds: list[str] = Field(default_factory=lambda: ["secure_api", "resilient_fetch"])
    max_concurrent_runs: int = Field(100, ge=1, description="unfinished API runs at once")
    host_inputs: list[str] = Field(
        default_factory=lambda: ["base_url", "url", "source_url", "endpoint", "remote_url"],
        description="input names searched, in order, for the run's source URL",
    )
    host_concurrency: int = Field(4, ge=1, description="unfinished runs per host at once")
    host_rate_limit: int = Field(30, ge=1, description="runs admitted per host per window")
    host_rate_window_s: float = Field(60.0, gt=0, description="the rate limit's window")
    pause_statuses: list[int] = Field(
        default_factory=lambda: [429], description="HTTP statuses in step errors that pause"
    )
    pause_error_codes: list[str] = Field(
        default_factory=lambda: ["http_429", "rate_limited", "too_many_requests", "circuit_open"],
        description="error codes in step errors that pause the host",
    )
    pause_cooldown_s: float = Field(
        60.0, gt=0, description="a paused host resumes this long after its last throttled call"
    )


class FileManagerConfig(_Config):
    """Bulk file runs: a run cap, a ceiling on map_over fan-out, and the chunk size passed in."""

    paused: bool = Field(
        False,
        description="admit no new run of its kinds while true; waiting runs keep waiting",
    )
    kinds: list[str] = Field(default_factory=lambda: ["bulk_file"])
    max_concurrent_runs: int = Field(20, ge=1, description="unfinished file runs at once")
    max_fanout: int = Field(16, ge=1, description="ceiling on each map_over step's map_concurrency")
    chunk_size: int = Field(
        500,
        ge=1,
        description="given as input `chunk_size` when the workflow declares it and the "
        "caller left it out",
    )


class IngestionManagerConfig(_Config):
    """The default policy: a run cap for its kinds and for any kind no other manager claims."""

    paused: bool = Field(
        False,
        description="admit no new run of its kinds (nor of kinds no manager claims) while "
        "true; waiting runs keep waiting",
    )
    kinds: list[str] = Field(default_factory=lambda: ["standard", "test"])
    max_concurrent_runs: int = Field(200, ge=1, description="unfinished runs at once")


class StreamManagerConfig(_Config):
    """Continuous stream runs: a run cap and backpressure when the work queue grows."""

    paused: bool = Field(
        False,
        description="admit no new run of its kinds while true; waiting runs keep waiting",
    )
    kinds: list[str] = Field(default_factory=lambda: ["realtime_stream"])
    max_concurrent_runs: int = Field(10, ge=1, description="unfinished stream runs at once")
    backpressure_queue_size: int = Field(
        1000,
        ge=1,
        description="stream runs wait while the engines' backlog (ready steps plus admitted "
        "runs not started) is at least this",
    )


class OrchestratorsConfig(_Config):
    """All five managers; each workflow kind belongs to at most one kind-specific manager."""

    batch_manager: BatchManagerConfig = Field(default_factory=BatchManagerConfig)
    api_manager: ApiManagerConfig = Field(default_factory=ApiManagerConfig)
    file_manager: FileManagerConfig = Field(default_factory=FileManagerConfig)
    ingestion_manager: IngestionManagerConfig = Field(default_factory=IngestionManagerConfig)
    stream_manager: StreamManagerConfig = Field(default_factory=StreamManagerConfig)

    @model_validator(mode="after")
    def _kinds_once(self) -> OrchestratorsConfig:
        seen: dict[str, str] = {}
        for name, kinds in self.kind_lists().items():
            for kind in kinds:
                if kind in seen:
                    raise ValueError(f"{name}.kinds: {kind!r} already belongs to {seen[kind]}")
                seen[kind] = name
        return self

    def kind_lists(self) -> dict[str, list[str]]:
        """Kind-specific managers and the workflow kinds each one governs."""
        return {
            "api_manager": self.api_manager.kinds,
            "file_manager": self.file_manager.kinds,
            "ingestion_manager": self.ingestion_manager.kinds,
            "stream_manager": self.stream_manager.kinds,
        }

    def manager_of(self, kind: str) -> str:
        """The manager governing runs of `kind` (the ingestion manager by default)."""
        for name, kinds in self.kind_lists().items():
            if kind in kinds:
                return name
        return "ingestion_manager"
