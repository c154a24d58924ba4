"""The data-merger app: `uvicorn agents.data_merger.app:create_app --factory --port 8105`."""

from __future__ import annotations

import importlib
import threading

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_merger.actions import registry


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the data-merger app."""
    # delta-rs' file listings reach pyarrow through pandas, whose first import takes about a
    # second: import it now, beside the start, not inside the first merge a user waits for.
    threading.Thread(target=importlib.import_module, args=("pandas",), daemon=True).start()
    return create_agent_app(registry, settings)
