"""The data-transformer app: `uvicorn agents.data_transformer.app:create_app --factory --port
8108`.

An agent of its own rather than an action of the converter: a transform runs a user's SQL,
which wants its own memory and thread limits and its own sandbox (agents.data_transformer
.sandbox), and it is the seed's feature-engineering integration, which a team may replace with
its own service speaking the same protocol (docs/agent-protocol.md).
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_transformer.actions import registry
from agents.data_transformer.settings import transformer_settings


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the data-transformer app."""
    return create_agent_app(registry, transformer_settings(settings))
