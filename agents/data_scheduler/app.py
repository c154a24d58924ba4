"""The data-scheduler app: `uvicorn agents.data_scheduler.app:create_app --factory --port 8104`."""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_scheduler.actions import registry
from agents.data_scheduler.recommend import BASELINE, MODEL


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the data-scheduler app."""
    return create_agent_app(registry, settings, models={MODEL: BASELINE})
