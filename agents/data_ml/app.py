"""The data-ml app: `uvicorn agents.data_ml.app:create_app --factory --port 8107`.

A seventh agent rather than an action set on one of the six: training is CPU- and
memory-heavy and pulls scikit-learn and the MLflow client in, which an ingestion agent should
neither pay for nor be slowed by. Kept apart, it gets its own resources (and can be scaled to
zero between nightly runs) while `train_models` stays an ordinary workflow of the platform.
"""

from __future__ import annotations

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_ml.actions import registry


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the data-ml app."""
    return create_agent_app(registry, settings)
