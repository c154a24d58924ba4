"""The README's `standard` section lists every input the workflow declares, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from shared.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_every_standard_input_is_in_the_readme() -> None:
    spec = load_spec(ROOT / "workflows" / "standard.yaml")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### `standard`", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert listed == list(spec.inputs), "README's standard table and workflows/standard.yaml differ"
