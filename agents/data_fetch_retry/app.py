"""The data-fetch-retry service.

Run: `uvicorn agents.data_fetch_retry.app:create_app --factory --port 8106`.
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_fetch_retry.actions import registry
from ml.retry_strategy.policy import StaticExponential


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """The fetch-retry app: fetch, noop; adaptive fetches decide with `retry_strategy`."""
    # The baseline is the spec's static exponential backoff, behind the model's interface.
    return create_agent_app(registry, settings, models={"retry_strategy": StaticExponential()})
