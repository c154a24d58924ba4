"""How `ingestctl run -i key=value` reads a value, as its --help says: JSON when it is JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingestctl.cli import CliError, _parse_inputs

ROOT = Path(__file__).resolve().parents[1]


def test_a_json_value_is_read_as_json_and_anything_else_as_text() -> None:
    parsed = _parse_inputs(
        ["n=5", "on=true", "ids=[1,2]", 'opts={"a":1}', "zip=08123", 'code="12345"', "u=a=b"],
        None,
    )
    assert parsed == {
        "n": 5, "on": True, "ids": [1, 2], "opts": {"a": 1},
        "zip": "08123",  # not JSON (a leading zero), so text, unchanged
        "code": "12345",  # quoted: text, not the number
        "u": "a=b",  # only the first = splits
    }  # fmt: skip


def test_minus_i_wins_over_the_inputs_file(tmp_path: Path) -> None:
    file = tmp_path / "inputs.yaml"
    file.write_text("n: 1\nname: orders\n")
    assert _parse_inputs(["n=2"], file) == {"n": 2, "name": "orders"}
    file.write_text("- not a mapping\n")
    with pytest.raises(CliError, match="not a mapping"):
        _parse_inputs([], file)


def test_the_help_says_how_values_are_read() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "ingestctl", "run", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": ""},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "read as JSON" in shown.stdout and "as text" in shown.stdout
