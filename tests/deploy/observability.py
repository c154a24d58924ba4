"""What the observability tests share: where the rules are, and reading them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules.test.yml"
MISSING_PROMETHEUS = (
    "Debian's prometheus package is not installed (no prometheus or promtool on PATH): "
    "`.ci/run` installs it; here run `apt-get install -y prometheus`"
)


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of deploy/prometheus/rules.yml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
