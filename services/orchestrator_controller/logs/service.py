"""Reading a run's lines out of every service's log file, merged by time."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from services.orchestrator_controller.logs.schemas import LogLine, RunLogs
from shared.errors import Conflict


def log_folder(configured: str | None) -> Path:
    """The folder of *.log files, or a 409 saying why there is none to read."""
    if not configured:
        raise Conflict(
            "this controller reads no log files (CONTROLLER_LOG_DIR is unset): the services "
            "log to stdout here, read them where that goes (docker compose logs, kubectl "
            "logs); `make up` and `make demo` set it to var/logs",
            code="logs_not_collected",
        )
    folder = Path(configured)
    if not folder.is_dir():
        raise Conflict(
            f"CONTROLLER_LOG_DIR={configured!r} is not a folder on the controller's host",
            code="logs_not_collected",
        )
    return folder


def read_run_logs(folder: Path, *, run_id: uuid.UUID, step: str | None, limit: int) -> RunLogs:
    """The lines naming `run_id` (and `step`) in every *.log of `folder`, the last `limit`.

    Blocking (it reads files): call it in a thread. Only lines written by shared/logs.py can
    name a run; anything else in a file (a raw traceback before logging started, a line cut
    short by a kill) is not about a run and is passed over.
    """
    wanted = str(run_id)
    # The formatter writes compact JSON, so a plain substring test skips almost every line
    # of other runs before any JSON is parsed.
    needle = f'"run_id":"{wanted}"'
    found: list[dict[str, Any]] = []
    files = sorted(folder.glob("*.log"))
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if needle not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(entry, dict) or entry.get("run_id") != wanted:
                    continue
                if step is not None and entry.get("step_id") != step:
                    continue
                found.append(entry)
    # Same clock format everywhere: the text order is the time order; the file order (sorted
    # names) keeps equal times stable.
    found.sort(key=lambda entry: str(entry.get("ts", "")))
    kept = found[-limit:]
    return RunLogs(
        run_id=run_id,
        step=step,
        lines=[LogLine.model_validate(entry) for entry in kept],
        total=len(found),
        truncated=len(found) > limit,
        files=[path.name for path in files],
    )
