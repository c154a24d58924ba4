"""The base-data-quality app: `uvicorn agents.base_data_quality.app:create_app --factory --port
8120`.

An external agent on the built-ins' base: a workflow step names it once it is registered
(`POST /agents` or an Agent resource), in place of the merger's or the converter's own checks,
so a team can scale, deploy or replace the checks apart from the merges (docs/agent-protocol.md).
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.base_data_quality.actions import registry


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the base-data-quality app."""
    return create_agent_app(registry, settings)
