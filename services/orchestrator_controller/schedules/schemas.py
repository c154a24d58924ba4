"""Bodies of the schedules API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.orchestrator_controller.schedules.timing import normalise_cron, zone

NAME_PATTERN = r"^[a-z][a-z0-9_\-]{0,99}$"
Catchup = Literal["skip", "latest", "all"]
Overlap = Literal["skip", "buffer_one", "allow"]


class ScheduleFields(BaseModel):
    """What a schedule runs and when: one of `cron`, `interval_s`, `continuous` or adaptive."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(description="name of a registered workflow")
    version: int | None = Field(None, ge=1, description="its version; newest at each fire")
    inputs: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-100, le=100, description="priority of the runs it starts")
    cron: str | None = Field(None, description="five-field cron expression (or @daily, ...)")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in")
    interval_s: float | None = Field(
        None, ge=1, le=366 * 86400, description="fire every this many seconds"
    )
    start_at: datetime | None = Field(
        None, description="first fire of an interval schedule (default: one interval from now)"
    )
    continuous: bool = Field(False, description="start a new run whenever the previous ends")
    mode: Literal["adaptive"] | None = Field(
        None,
        description="adaptive: after each run the scheduler agent picks the next fire from the "
        "schedule's collect history, within [min_interval_s, max_interval_s]",
    )
    min_interval_s: float = Field(
        0,
        ge=0,
        le=86400,
        description="continuous: at least this long between two starts; adaptive: the "
        "shortest interval",
    )
    max_interval_s: float | None = Field(
        None, ge=1, le=366 * 86400, description="adaptive: the longest interval"
    )
    backoff_initial_s: float = Field(
        10, gt=0, le=86400, description="continuous: pause after a failed run, doubling"
    )
    backoff_max_s: float = Field(
        600, gt=0, le=7 * 86400, description="continuous: longest pause after failures"
    )
    catchup: Catchup = Field(
        "latest",
        description="fires missed while the controller was down: skip them, run the latest, "
        "or run all (at most max_catchup)",
    )
    max_catchup: int = Field(10, ge=1, le=1000, description="most missed fires run by `all`")
    overlap: Overlap = Field(
        "skip",
        description="when the previous run is still going: skip the fire, keep one to run "
        "after it (buffer_one), or start anyway (allow)",
    )
    jitter_s: float = Field(
        0, ge=0, le=3600, description="delay each fire by up to this many seconds"
    )
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else normalise_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("start_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset (e.g. 2026-01-01T00:00:00Z)")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleFields:
        given = [n for n in ("cron", "interval_s") if getattr(self, n) is not None]
        if self.continuous:
            given.append("continuous")
        if self.mode == "adaptive":
            given.append("mode: adaptive")
        if len(given) != 1:
            raise ValueError(
                "cron: give exactly one of `cron`, `interval_s`, `continuous: true` or "
                f"`mode: adaptive` (got {', '.join(given) or 'none'})"
            )
        if self.mode == "adaptive":
            if self.max_interval_s is None or self.min_interval_s < 1:
                raise ValueError("max_interval_s: adaptive needs min_interval_s >= 1 and a max")
            if self.max_interval_s < self.min_interval_s:
                raise ValueError("max_interval_s: must be at least min_interval_s")
        elif self.max_interval_s is not None:
            raise ValueError("max_interval_s: only for adaptive schedules")
        if self.start_at is not None and self.interval_s is None:
            raise ValueError("start_at: only for interval schedules")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s: must be at least backoff_initial_s")
        return self

    @property
    def trigger(self) -> str:
        """cron, interval, continuous or adaptive."""
        if self.continuous:
            return "continuous"
        if self.mode == "adaptive":
            return "adaptive"
        return "cron" if self.cron is not None else "interval"


class ScheduleCreate(ScheduleFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "orders-nightly",
                    "workflow": "standard",
                    "inputs": {
                        "source": {"kind": "http", "url": "https://api.example.com/v1/orders"},
                        "dataset": "orders",
                        "primary_key": ["order_id"],
                    },
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Berlin",
                },
                {
                    "name": "orders-adaptive",
                    "workflow": "standard",
                    "inputs": {
                        "source": {"kind": "file", "url": "/srv/exports/orders", "glob": "*.csv"},
                        "dataset": "orders",
                        "primary_key": ["order_id"],
                    },
                    "mode": "adaptive",
                    "min_interval_s": 300,
                    "max_interval_s": 21600,
                },
            ]
        }
    )

    name: str = Field(pattern=NAME_PATTERN, description="unique name of the schedule")


class ScheduleUpdate(BaseModel):
    """A partial change; a new trigger (cron, interval_s or continuous) replaces the old one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"cron": "0 */6 * * *", "timezone": "UTC"}, {"enabled": False}]
        },
    )

    workflow: str | None = None
    version: int | None = None
    inputs: dict[str, Any] | None = None
    priority: int | None = None
    cron: str | None = None
    timezone: str | None = None
    interval_s: float | None = None
    start_at: datetime | None = None
    continuous: bool | None = None
    mode: Literal["adaptive"] | None = None
    min_interval_s: float | None = None
    max_interval_s: float | None = None
    backoff_initial_s: float | None = None
    backoff_max_s: float | None = None
    catchup: Catchup | None = None
    max_catchup: int | None = None
    overlap: Overlap | None = None
    jitter_s: float | None = None
    enabled: bool | None = None


class FireOut(BaseModel):
    fire_at: datetime
    outcome: str
    detail: str | None
    run_id: uuid.UUID | None
    run_status: str | None
    fired_at: datetime


class AdaptiveDecision(BaseModel):
    """The scheduler agent's last answer for an adaptive schedule (or the fallback's)."""

    run_id: uuid.UUID | None = Field(description="the run whose end it followed")
    interval_s: float
    next_fire_at: datetime
    reason: str
    decided_at: datetime
    model: str | None
    version: str | None = Field(description="the model version; null for a baseline")
    source: str = Field(description="registry, baseline, or fallback (agent unreachable)")


class ScheduleOut(BaseModel):
    id: uuid.UUID
    name: str
    workflow: str
    version: int | None
    inputs: dict[str, Any]
    priority: int
    trigger: str
    cron: str | None
    timezone: str
    interval_s: float | None
    start_at: datetime | None
    min_interval_s: float
    max_interval_s: float | None
    decision: AdaptiveDecision | None
    backoff_initial_s: float
    backoff_max_s: float
    catchup: str
    max_catchup: int
    overlap: str
    jitter_s: float
    enabled: bool
    status_reason: str | None
    source: str
    next_fire_times: list[datetime]
    buffered_fire_at: datetime | None
    consecutive_failures: int
    missed_fires: int
    last_runs: list[FireOut]
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
