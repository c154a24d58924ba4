"""The data-converter app: `uvicorn agents.data_converter.app:create_app --factory --port 8103`."""

from __future__ import annotations

import os

from fastapi import FastAPI

from agents.base.app import create_agent_app
from agents.base.settings import AgentSettings
from agents.data_converter.actions import MODEL, registry
from ml.format_recognition.rules import RulesRecognizer

# polars reads these once, at its first scan. Its defaults read text in chunks big enough to
# cost ~300 MB of buffers; 4 MiB chunks keep a conversion near 150 MB at about the same speed.
# Set in the environment to override.
POLARS_CHUNKS = {"POLARS_CSV_CHUNK_SIZE": str(4 << 20), "POLARS_NDJSON_CHUNK_SIZE": str(4 << 20)}


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the data-converter app."""
    for name, value in POLARS_CHUNKS.items():
        os.environ.setdefault(name, value)
    # The baseline is the rule-based recogniser; the registry's champion replaces it when there
    # is one (ml.slot).
    return create_agent_app(registry, settings, models={MODEL: RulesRecognizer()})
