"""The data-connector service.

Run: `uvicorn agents.data_connector.app:create_app --factory --port 8101`.
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_connector.actions import registry
from agents.data_connector.detection import MODEL, baseline


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """The connector app: test_connection, describe, noop; source detection by the registry."""
    return create_agent_app(registry, settings, models={MODEL: baseline()})
