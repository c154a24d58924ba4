"""The controller settings that may change while it runs, and the holder they are read from.

`LiveSettings` is the one list of them: each field is a ControllerSettings field of the same
name, bounds and meaning, read where it is used at each use (a loop's next period, the next
request) through `settings.live.current`, never copied at start. Every other setting needs a
restart (`restart_required_fields`): a Config resource naming one is refused.

`LiveConfig` holds the values in force: the process's settings (environment, then the code's
defaults) until a Config resource says otherwise, and it swaps them whole, logging each field
that changed. `sources` says where each value comes from: `default`, `settings` (the
environment) or `resource <name>`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from shared.logs import set_log_level

if TYPE_CHECKING:
    from services.orchestrator_controller.settings import ControllerSettings

log = logging.getLogger(__name__)

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class LiveSettings(BaseModel):
    """The controller settings a Config resource may change without a restart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_level: LogLevel = Field(
        "info",
        description="level of the log of every service: the controller at once, each engine "
        "and agent within its LIVE_SETTINGS_POLL_S (httpx's request lines stay at warning "
        "unless debug)",
    )
    schedule_tick_s: float = Field(1.0, gt=0, description="how often due schedules are fired")
    schedule_misfire_grace_s: float = Field(
        60.0,
        ge=0,
        description="a fire found later than this (controller down) counts as missed and "
        "follows the schedule's catch-up policy",
    )
    admission_interval_s: float = Field(
        1.0, gt=0, description="how often runs waiting on a policy are re-evaluated"
    )
    handoff_interval_s: float = Field(
        2.0,
        gt=0,
        description="how often runs the engine has not started are handed off again",
    )
    unclaimed_after_s: float = Field(
        30.0,
        gt=0,
        description="an admitted run no engine has started after this long says so in its "
        "status_reason",
    )
    health_interval_s: float = Field(5.0, gt=0, description="agent health polling period")
    health_timeout_s: float = Field(
        2.0, gt=0, description="timeout of one agent (and engine) health check"
    )
    relay_lag_warn_s: float = Field(
        30.0, gt=0, description="/health says the relay is lagging past this event age"
    )
    max_spec_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="largest workflow spec accepted, in bytes of its stored (compact JSON) "
        "form, for a registered definition and an inline spec on /coordinate alike; larger "
        "is a 413 (spec_too_large)",
    )
    max_nesting_depth: int = Field(
        32,
        ge=2,
        le=256,
        description="deepest nesting of JSON objects and lists accepted in a spec's params, "
        "its input defaults and a run's inputs; deeper is a 422 (too_deep)",
    )
    retention_days: float = Field(
        30.0,
        ge=0,
        description="days a finished run stays readable (with its steps, events and "
        "Idempotency-Keys) before it is deleted; 0 keeps every run",
    )
    retention_interval_s: float = Field(
        300.0, gt=0, description="how often finished runs past retention_days are deleted"
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="largest request body accepted (413 body_too_large beyond, checked before "
        "the body is read or authenticated)",
    )

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> LiveSettings:
        """The values the process's settings give (the environment over the defaults)."""
        values = {name: getattr(settings, name) for name in cls.model_fields}
        level = str(values["log_level"]).lower()
        # the other names logging knows, as the level they behave as on the root logger
        values["log_level"] = {"warn": "warning", "fatal": "critical", "notset": "debug"}.get(
            level, level
        )
        return cls.model_validate(values)


LIVE_FIELDS: tuple[str, ...] = tuple(LiveSettings.model_fields)


def environment_variable(settings_type: type[Any], name: str) -> str:
    """The environment variable a ControllerSettings field is read from."""
    info = settings_type.model_fields[name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        named = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        if named:
            return named[0]
    prefix = str(settings_type.model_config.get("env_prefix") or "")
    return f"{prefix}{name.upper()}"


def restart_required_fields(settings_type: type[Any]) -> list[str]:
    """The ControllerSettings fields read once at start: changing them needs a restart."""
    return [name for name in settings_type.model_fields if name not in LiveSettings.model_fields]


class LiveConfig:
    """The live settings in force for one controller, swapped whole by `apply`."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.base = LiveSettings.from_settings(settings)
        given = settings.model_fields_set
        self.base_sources: dict[str, str] = {
            name: "settings" if name in given else "default" for name in LIVE_FIELDS
        }
        self.current = self.base
        self.sources = dict(self.base_sources)
        self.resource: str | None = None
        self._lock = threading.Lock()

    async def sleep(self, name: str, *, poll_s: float = 0.5) -> None:
        """Sleep for as many seconds as the live setting `name` says, following a change made
        meanwhile (a loop period shortened from an hour applies within `poll_s`, not in an
        hour): done once that long has passed since the call, by the value in force."""
        start = time.monotonic()
        while True:
            remaining = start + float(getattr(self.current, name)) - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, poll_s))

    def apply(
        self, overrides: Mapping[str, Any], resource: str | None = None
    ) -> dict[str, tuple[Any, Any]]:
        """Put in force the process's values with `overrides` (already validated) over them;
        returns each field that changed, (old, new), and logs it."""
        new = LiveSettings.model_validate({**self.base.model_dump(), **overrides})
        sources = dict(self.base_sources)
        for name in overrides:
            sources[name] = f"resource {resource}"
        with self._lock:
            old = self.current
            self.current, self.sources = new, sources
            self.resource = resource
        changed = {
            name: (getattr(old, name), getattr(new, name))
            for name in LIVE_FIELDS
            if getattr(old, name) != getattr(new, name)
        }
        if "log_level" in changed:
            set_log_level(new.log_level)
        for name, (before, after) in changed.items():
            log.warning(
                "live setting %s: %s -> %s (%s)",
                name,
                before,
                after,
                sources[name],
                extra={"setting": name, "source": sources[name]},
            )
        return changed
