"""The data-collector service.

Run: `uvicorn agents.data_collector.app:create_app --factory --port 8102`.
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_collector.actions import registry
from agents.data_collector.autodetect import MODEL
from agents.data_collector.pacing import BASELINE as CONNECTION_BASELINE
from ml.source_detection.rules import RulesDetector


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """The collector app: collect, commit_state, get_state, ack_stream, noop."""
    return create_agent_app(
        registry,
        settings,
        models={"connection_optimization": CONNECTION_BASELINE, MODEL: RulesDetector()},
    )
