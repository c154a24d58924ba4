"""The README's list of streams is the set of event types the platform writes, no more, no less."""

from __future__ import annotations

import re
from pathlib import Path

from shared.state.machine import EVENT_TYPES

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented_streams() -> set[str]:
    text = README.read_text(encoding="utf-8")
    paragraph = text.split("Streams (one per event type):", 1)[1].split("Each entry has", 1)[0]
    streams: set[str] = set()
    family = ""
    for name in re.findall(r"`([a-z_.]+)`", paragraph):
        # `.started` after `ingestion.workflow.pending` is shorthand for ingestion.workflow.started
        if name.startswith("."):
            streams.add(family + name)
        else:
            family = name.rsplit(".", 1)[0]
            streams.add(name)
    return streams


def test_readme_lists_every_stream() -> None:
    assert _documented_streams() == {*EVENT_TYPES, "ingestion.agent.health"}
