"""Loading workflow specs from YAML (the built-in workflows ship as files in `workflows/`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.spec.catalog import AGENT_ACTIONS
from shared.spec.models import AGENTS_CONTEXT, WorkflowSpec

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "workflows"


def load_spec(path: Path) -> WorkflowSpec:
    """Parse and validate one YAML workflow file (it may name the built-in agents only)."""
    return WorkflowSpec.model_validate(
        yaml.safe_load(path.read_text()), context={AGENTS_CONTEXT: AGENT_ACTIONS}
    )


def builtin_specs(directory: Path = BUILTIN_DIR) -> list[WorkflowSpec]:
    """Every workflow shipped with the platform."""
    return [load_spec(p) for p in sorted(directory.glob("*.yaml"))]
