"""The admission rules themselves, on in-memory counts (no I/O): may this run start now?"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from services.orchestrator_controller.policies.config import OrchestratorsConfig


def source_host(inputs: dict[str, Any], names: list[str]) -> str | None:
    """The lower-cased host of the first URL among the inputs named in `names`."""
    for name in names:
        value = inputs.get(name)
        if isinstance(value, str) and value:
            host = urlsplit(value if "://" in value else f"//{value}").hostname
            if host:
                return host.lower()
    return None


@dataclass
class Candidate:
    """A run that may be admitted: a waiting one (run_id set) or one being accepted (None)."""

    run_id: uuid.UUID | None
    workflow: str
    kind: str
    inputs: dict[str, Any]
    priority: int
    created_at: datetime
    status_reason: str | None = None


@dataclass
class Pause:
    until: datetime
    why: str


@dataclass
class Load:
    """What is admitted and unfinished right now, as counts the gates check and update."""

    total: int = 0
    by_workflow: Counter[str] = field(default_factory=Counter)
    by_manager: Counter[str] = field(default_factory=Counter)
    by_host: Counter[str] = field(default_factory=Counter)
    recent_by_host: Counter[str] = field(default_factory=Counter)
    paused: dict[str, Pause] = field(default_factory=dict)
    # work the engines have been handed and not begun: ready steps, admitted unstarted runs
    backlog: int = 0
    # the backlog plus runs waiting for admission (what workflow_queue_size exports)
    queue_size: int = 0


def _cap(config: OrchestratorsConfig, manager: str) -> int:
    cap: int = getattr(config, manager).max_concurrent_runs
    return cap


def wait_reason(
    config: OrchestratorsConfig, load: Load, run: Candidate, now: datetime
) -> str | None:
    """Why `run` must wait now, or None when every policy lets it start."""
    batch = config.batch_manager
    if batch.paused:
        return "waiting: batch-manager paused"
    manager = config.manager_of(run.kind)
    if getattr(config, manager).paused:
        return f"waiting: {manager.replace('_', '-')} paused"
    if load.total >= batch.max_concurrent_runs:
        return f"waiting: overall concurrency cap {batch.max_concurrent_runs} reached"
    if load.by_workflow[run.workflow] >= batch.max_concurrent_per_workflow:
        return (
            f"waiting: workflow {run.workflow} at its concurrency cap "
            f"{batch.max_concurrent_per_workflow}"
        )
    cap = _cap(config, manager)
    if load.by_manager[manager] >= cap:
        return f"waiting: {manager.replace('_', '-')} at its concurrency cap {cap}"
    if manager == "api_manager":
        api = config.api_manager
        host = source_host(run.inputs, api.host_inputs)
        if host is not None:
            pause = load.paused.get(host)
            if pause is not None and pause.until > now:
                return (
                    f"waiting: host {host} paused after {pause.why} until "
                    f"{pause.until.isoformat(timespec='seconds')}"
                )
            if load.by_host[host] >= api.host_concurrency:
                return f"waiting: host {host} at its concurrency cap {api.host_concurrency}"
            if load.recent_by_host[host] >= api.host_rate_limit:
                return (
                    f"waiting: host {host} at its rate limit of {api.host_rate_limit} runs "
                    f"per {api.host_rate_window_s:g}s"
                )
    if manager == "stream_manager":
        limit = config.stream_manager.backpressure_queue_size
        if load.backlog >= limit:
            return f"waiting: backpressure, engine backlog {load.backlog} >= {limit}"
    return None


# The gate behind each reason wait_reason writes (a bounded label for admission_waiting_runs),
# matched in wait_reason's order; tests/policies/test_reason_codes.py holds the two in step.
_REASON_CODES = (
    (re.compile(r"^waiting: [a-z]+-manager paused$"), "manager_paused"),
    (re.compile(r"^waiting: overall concurrency cap "), "overall_cap"),
    (re.compile(r"^waiting: workflow .+ at its concurrency cap "), "workflow_cap"),
    (re.compile(r"^waiting: [a-z]+-manager at its concurrency cap "), "manager_cap"),
    (re.compile(r"^waiting: host \S+ paused after "), "host_paused"),
    (re.compile(r"^waiting: host \S+ at its concurrency cap "), "host_cap"),
    (re.compile(r"^waiting: host \S+ at its rate limit "), "host_rate_limit"),
    (re.compile(r"^waiting: backpressure, "), "backpressure"),
)


def reason_code(reason: str | None) -> str:
    """The gate a stored wait reason names, or `other`."""
    for pattern, code in _REASON_CODES:
        if reason and pattern.match(reason):
            return code
    return "other"


def take(config: OrchestratorsConfig, load: Load, run: Candidate) -> None:
    """Count `run` as admitted, so the next candidates see its slot taken."""
    load.total += 1
    load.backlog += 1
    load.by_workflow[run.workflow] += 1
    manager = config.manager_of(run.kind)
    load.by_manager[manager] += 1
    if manager == "api_manager":
        host = source_host(run.inputs, config.api_manager.host_inputs)
        if host is not None:
            load.by_host[host] += 1
            load.recent_by_host[host] += 1
