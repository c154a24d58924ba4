"""Engine settings (env prefix ENGINE_)."""

from __future__ import annotations

import os
import socket
import uuid

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class EngineSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ENGINE_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="bind address (used by the launcher)")
    port: int = Field(8000, description="HTTP port")
    worker_id: str = Field(default_factory=_worker_id, description="lease owner name")
    concurrency: int = Field(128, ge=1, description="steps in flight at once in this replica")
    claim_batch: int = Field(64, ge=1, description="steps claimed per query at most")
    lease_seconds: float = Field(
        15.0, gt=0, description="a step whose lease is not renewed this long is taken over"
    )
    # Temporal's sticky schedule-to-start timeout is 5 s too. Shorter, a busy replica's steps
    # are taken over in every burst of fan-out, and each takeover re-reads the run.
    sticky_seconds: float = Field(
        5.0,
        ge=0,
        description="a step meant for another replica (its run's affinity) is taken over "
        "once it has waited this long; keeps each run on one replica while that one keeps up",
    )
    max_map_items: int = Field(
        100_000,
        ge=1,
        description="most items a map_over step fans out over (a bulk_file of 100,000 files "
        "fits); more fails the step with a message naming this setting",
    )
    max_rendered_chars: int = Field(
        1024 * 1024,
        ge=1024,
        description="most characters a step's params may gain by template interpolation",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, description="safety-net poll; wake-ups normally come by LISTEN/NOTIFY"
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="on SIGTERM, how long in-flight steps may finish before release"
    )
    start_loops: bool = Field(True, description="run the worker loops (off for API-only tests)")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"),
        description="MLflow registry the engine loads retry_strategy's champion from (for "
        "`strategy: adaptive` steps); unset: adaptive steps use the static backoff baseline",
    )
    model_refresh_s: float = Field(
        60.0, gt=0, description="how often the engine checks for a new retry_strategy champion"
    )
