"""GET /config: the controller's live settings in force, and where each comes from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.orchestrator_controller.deps import ReadKey
from services.orchestrator_controller.live.resource import resource_field
from services.orchestrator_controller.live.settings import (
    LiveConfig,
    LiveSettings,
    environment_variable,
    restart_required_fields,
)
from services.orchestrator_controller.settings import ControllerSettings
from shared.errors import errors

router = APIRouter(tags=["config"], responses=errors(401, 403, 503))


class LiveSettingOut(BaseModel):
    name: str = Field(description="the setting, e.g. schedule_tick_s")
    resource_field: str = Field(description="its name in a Config resource's spec")
    environment: str = Field(description="the environment variable the process reads it from")
    value: Any = Field(description="the value in force")
    source: str = Field(
        description="where the value comes from: `default` (the code), `settings` (the "
        "environment) or `resource <name>` (a Config resource)"
    )
    description: str


class LiveConfigOut(BaseModel):
    resource: str | None = Field(
        description="the Config resource setting the live settings (none: the environment's)"
    )
    items: list[LiveSettingOut] = Field(description="every live setting, in force now")
    restart_required: list[str] = Field(
        description="the environment variables of the settings that cannot change live (a "
        "Config resource naming one is refused with RestartRequired)"
    )


@router.get("/config", dependencies=[ReadKey], response_model=LiveConfigOut)
async def live_config(request: Request) -> LiveConfigOut:
    """The controller's live settings in force (log level, loop periods, request limits),
    each with its source: a Config resource changes them without a restart."""
    settings: ControllerSettings = request.app.state.settings
    live: LiveConfig = settings.live
    current, sources = live.current, live.sources  # one swap's values throughout
    values = current.model_dump(mode="json")
    return LiveConfigOut(
        resource=live.resource,
        items=[
            LiveSettingOut(
                name=name,
                resource_field=resource_field(name),
                environment=environment_variable(ControllerSettings, name),
                value=values[name],
                source=sources[name],
                description=str(info.description),
            )
            for name, info in LiveSettings.model_fields.items()
        ],
        restart_required=sorted(
            {
                environment_variable(ControllerSettings, name)
                for name in restart_required_fields(ControllerSettings)
            }
        ),
    )
