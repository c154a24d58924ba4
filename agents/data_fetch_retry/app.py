"""The data-fetch-retry service.

Run: `uvicorn agents.data_fetch_retry.app:create_app --factory --port 8106`.
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_fetch_retry.actions import registry


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """The fetch-retry app: fetch, noop."""
    return create_agent_app(registry, settings)
