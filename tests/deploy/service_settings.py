"""Build each service's real Settings class from the environment a deployment gives it."""

from __future__ import annotations

import os

import pytest
from pydantic_settings import BaseSettings

from agents.base.settings import AgentSettings
from services.orchestrator_controller.settings import ControllerSettings
from services.workflow_engine.settings import EngineSettings

from .contract import AGENTS, ALL_VARIABLES

SETTINGS: dict[str, type[BaseSettings]] = {
    "controller": ControllerSettings,
    "workflow-engine": EngineSettings,
    **dict.fromkeys(AGENTS, AgentSettings),
}
_PREFIXES = ("CONTROLLER_", "ENGINE_", "AGENT_")


def settings_from_env(component: str, env: dict[str, str]) -> BaseSettings:
    """The component's settings as the service would read them from exactly `env`."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(_PREFIXES) or key in ALL_VARIABLES:
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return SETTINGS[component](_env_file=None)
