"""The README's `sql_database` section lists every input the workflow declares, and the
workflow table names it."""

from __future__ import annotations

import re
from pathlib import Path

from shared.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_every_sql_database_input_is_in_the_readme() -> None:
    spec = load_spec(ROOT / "workflows" / "sql_database.yaml")
    readme = (ROOT / "README.md").read_text()
    heading = "## `sql_database`: a whole PostgreSQL schema"
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert listed == list(spec.inputs), "README's sql_database table and the workflow differ"
    workflows = readme.split("## Workflows", 1)[1].split("### `standard`", 1)[0]
    assert "| `sql_database` |" in workflows
