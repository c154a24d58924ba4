"""The connector's source detection: the decider (champion model or rules) on a probe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml.source_detection.body import HEAD_BYTES
from ml.source_detection.rules import RulesDetector

MODEL = "source_detection"
PROBE_BYTES = HEAD_BYTES  # how much of a body test_connection reads for the detection


def baseline() -> RulesDetector:
    """What serves when the registry has no champion: today's rules behind `detect`."""
    return RulesDetector()


def detect(
    ctx: Any, url: str, status: int | None, headers: Mapping[str, str], head: bytes
) -> dict[str, Any]:
    """The detection of one probe with its decider's provenance (model, version, source)."""
    decider = ctx.models[MODEL].current
    found = decider.predictor.detect(url, status, dict(headers), head)
    return {**found.as_dict(), "decided_by": decider.provenance()}
