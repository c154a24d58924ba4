"""Only shared/state/ writes the status or status_reason of a run or a step: its statements take
their guards and events from the transition table, so a write anywhere else would be a state
change the event stream does not tell. This reads every module of the code base (SQL strings and
ORM code) for such writes; other tables' `status` columns (schedules, agent_effects) are not
concerned."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("services", "agents", "shared", "launcher", "cli")
ALLOWED = ROOT / "shared" / "state"

_TABLES = r"(?:\w+\.)?\"?(?:workflow_runs|step_runs)\b\"?"
# An UPDATE of either table whose SET list names status or status_reason (up to the WHERE or
# the statement's end), or an INSERT into either (a new row's status is a write too).
_SQL_WRITE = re.compile(
    rf"\bUPDATE\s+{_TABLES}(?:\s+(?:AS\s+)?\w+)?\s+SET\b(?:(?!\bWHERE\b|\bFROM\b|;).)*?"
    r"\bstatus(?:_reason)?\s*="
    rf"|\bINSERT\s+INTO\s+{_TABLES}",
    re.IGNORECASE | re.DOTALL,
)
_MODELS = {"WorkflowRun", "StepRun"}
_COLUMNS = {"status", "status_reason"}


def _text_of(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with `{}` for what is interpolated."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
        )
    return None


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _targets(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def status_writes(source: str) -> list[tuple[int, str]]:
    """(line, what) for each write of a run's or a step's status or status_reason in `source`."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        text = _text_of(node)
        if text is not None:
            match = _SQL_WRITE.search(text)
            if match:
                line = getattr(node, "lineno", 0)
                found.append((line, " ".join(match.group(0).split())[:60]))
    # ORM: names bound to run or step rows (from an expression naming the model or such a
    # name, or annotated with it), then assignments to their status columns.
    rows: set[str] = set()
    for _ in range(3):  # a few rounds: `runs = select(WorkflowRun)`, then `for run in runs`
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.For | ast.AsyncFor):
                value = node.iter if isinstance(node, ast.For | ast.AsyncFor) else node.value
                hint = node.annotation if isinstance(node, ast.AnnAssign) else None
                mentioned = _names_in(value) if value is not None else set()
                mentioned |= _names_in(hint) if hint is not None else set()
                if mentioned & (_MODELS | rows):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        rows.update(_targets(target))
            elif (
                isinstance(node, ast.arg)
                and node.annotation is not None
                and _names_in(node.annotation) & _MODELS
            ):
                rows.add(node.arg)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in ast.walk(target):
                    if (
                        isinstance(element, ast.Attribute)
                        and element.attr in _COLUMNS
                        and isinstance(element.value, ast.Name)
                        and element.value.id in rows
                    ):
                        found.append((node.lineno, f"{element.value.id}.{element.attr} = ..."))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in _MODELS and any(k.arg in _COLUMNS for k in node.keywords):
                found.append((node.lineno, f"{name}(status=...)"))
            if name in {"update", "insert"} and any(_names_in(a) & _MODELS for a in node.args):
                found.append((node.lineno, f"{name}({ast.unparse(node.args[0])})"))
    return sorted(set(found))


def _modules() -> list[Path]:
    return sorted(
        path
        for top in SCANNED
        if (ROOT / top).is_dir()
        for path in (ROOT / top).rglob("*.py")
        if ALLOWED not in path.parents and ".venv" not in path.parts
    )


def test_nothing_outside_shared_state_writes_a_status() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _modules()
        for line, what in status_writes(path.read_text())
    ]
    assert not offenders, "status writes outside shared/state/:\n" + "\n".join(offenders)


def test_the_scan_covers_the_code_base() -> None:
    scanned = {path.relative_to(ROOT).parts[0] for path in _modules()}
    assert {"services", "agents", "shared"} <= scanned
    # and shared/state itself is full of writes (so the scan does see them)
    assert all(status_writes(p.read_text()) for p in (ALLOWED / "steps.py", ALLOWED / "leases.py"))


def test_the_scan_finds_each_kind_of_write() -> None:
    writes = {
        "sql update": 'q = text("UPDATE workflow_runs SET status_reason = :r WHERE id = :id")',
        "aliased": "q = text(\"UPDATE step_runs s SET lease_owner = NULL, status = 'READY'\")",
        "split": 'q = text(\n    "UPDATE platform.step_runs SET "\n    "status = :s WHERE 1"\n)',
        "f-string": "q = f\"UPDATE workflow_runs SET error = {x}, status = 'FAILED'\"",
        "insert": 'q = "INSERT INTO step_runs (run_id, status) VALUES (1, 2)"',
        "orm get": "async def f(s):\n    run = await s.get(WorkflowRun, 1)\n    run.status = 'X'",
        "orm loop": (
            "async def f(s):\n    runs = (await s.execute(select(StepRun))).scalars()\n"
            "    for r in runs:\n        r.status_reason = 'y'"
        ),
        "annotated": "def f(run: WorkflowRun) -> None:\n    run.status_reason = None",
        "constructor": "x = WorkflowRun(id=1, status='PENDING')",
        "core update": "stmt = update(StepRun).values(status='READY')",
    }
    for kind, source in writes.items():
        assert status_writes(source), f"missed: {kind}"


def test_the_scan_leaves_other_tables_alone() -> None:
    others = [
        "schedule.status_reason = 'paused'",
        "async def f(s):\n    schedule = await s.get(Schedule, 1)\n    schedule.status_reason = 1",
        "q = text(\"UPDATE agent_effects SET status = 'DONE' WHERE key = :k\")",
        'q = text("UPDATE schedules SET status_reason = NULL")',
        "q = text(\"SELECT status, status_reason FROM workflow_runs WHERE status = 'PENDING'\")",
        "q = text(\"UPDATE workflow_runs SET cancel_requested = true WHERE status = 'RUNNING'\")",
        "async def f(s):\n    run = await s.get(WorkflowRun, 1)\n    print(run.status)",
    ]
    for source in others:
        assert not status_writes(source), source
