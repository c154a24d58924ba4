"""Every run and step transition, declared once: the states it leaves, the states it reaches,
the event each arrival writes, and who causes it.

Each status-changing statement in shared/state takes its `status = ANY(:from)` guard from its
transition here (`guard`), returns the rows it changed, and writes `event_for(new status)` for
each of them in the same transaction. The fault harness and tests/state replay the event
stream against this table (`history.replay`), so a change without its event, or an event the
table does not allow, is caught.

A source of None is a row being inserted. A step row inserted PENDING writes no event (a run's
steps, a fan-out's items and a saga's compensations would otherwise cost an event each before
anything happened to them): a step row no event names is PENDING. Every other arrival has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.events.outbox import Event
from shared.state.machine import (
    RUN_ADMITTED,
    RUN_CANCELLING,
    RUN_EVENT,
    RUN_WAITING,
    STEP_EVENT,
    STEP_FANNED_OUT,
    RunStatus,
    StepStatus,
)

Status = RunStatus | StepStatus

R, S = RunStatus, StepStatus
WAITING_STEP = frozenset({S.PENDING, S.READY, S.RETRY_WAIT})  # open, not in an engine's hands


class Actor(StrEnum):
    """Who may cause a transition."""

    CONTROLLER = "controller accepting a run"
    ADMISSION = "admission policies"
    HANDOFF = "controller hand-off watch"
    STARTER = "engine starting runs"
    CLAIM = "engine claiming steps"
    RECORD = "engine recording results"
    ADVANCE = "engine advancing runs"
    FAN_OUT = "engine fanning out"
    LEASE_REAPER = "engine lease reaper"
    SHUTDOWN = "engine shutting down"
    CANCELLER = "cancel request"
    STOPPER = "engine stopping runs"
    SAGA = "engine compensating"


@dataclass(frozen=True)
class Transition:
    """One kind of change: from any of `sources` to any of `targets`, caused by `by`."""

    name: str
    entity: str  # "run" or "step"
    sources: frozenset[Status | None]
    targets: frozenset[Status]
    by: Actor
    # The event type of an arrival when it is not the target's status event (a change that
    # keeps the status writes its own), or None for an arrival that writes none.
    event: str | None = ""

    @property
    def guard(self) -> list[str]:
        """The `:from` parameter of the statement making this change (existing rows only)."""
        return sorted(s.value for s in self.sources if s is not None)

    @property
    def to(self) -> str:
        """The one status a single-target transition sets (as the statement's SET)."""
        [target] = self.targets
        return target.value

    def sql(self, column: str = "status") -> str:
        """The guard as SQL over `column`, generated from `sources`. A literal list rather than
        a bound array: the planner must see it to use the partial indexes on status."""
        values = ", ".join(f"'{value}'" for value in self.guard)
        return f"{column} IN ({values})"

    def event_for(self, target: Status | str) -> str | None:
        """The event type written when a row arrives in `target`."""
        if self.event != "":
            return self.event
        if self.entity == "run":
            return RUN_EVENT[RunStatus(target)]
        if self.sources == {None} and target == S.PENDING:
            return None  # see the module docstring
        return STEP_EVENT[StepStatus(target)]


def _run(
    name: str,
    sources: Iterable[RunStatus | None],
    targets: Iterable[RunStatus],
    by: Actor,
    event: str | None = "",
) -> Transition:
    return Transition(name, "run", frozenset(sources), frozenset(targets), by, event)


def _step(
    name: str,
    sources: Iterable[StepStatus | None],
    targets: Iterable[StepStatus],
    by: Actor,
    event: str | None = "",
) -> Transition:
    return Transition(name, "step", frozenset(sources), frozenset(targets), by, event)


# ---- runs --------------------------------------------------------------------------------
ACCEPT = _run("accept", {None}, {R.PENDING}, Actor.CONTROLLER)
HOLD = _run("hold", {R.PENDING}, {R.PENDING}, Actor.ADMISSION, RUN_WAITING)
NOTE_UNCLAIMED = _run("note unclaimed", {R.PENDING}, {R.PENDING}, Actor.HANDOFF, RUN_WAITING)
ADMIT = _run("admit", {R.PENDING}, {R.PENDING}, Actor.ADMISSION, RUN_ADMITTED)
START = _run("start", {R.PENDING}, {R.RUNNING}, Actor.STARTER)
CANCEL_PENDING = _run("cancel pending", {R.PENDING}, {R.CANCELLED}, Actor.CANCELLER)
REQUEST_CANCEL = _run("request cancel", {R.RUNNING}, {R.RUNNING}, Actor.CANCELLER, RUN_CANCELLING)
END = _run(
    "end",
    {R.RUNNING},
    {R.SUCCEEDED, R.FAILED, R.CANCELLED, R.COMPENSATING},
    Actor.ADVANCE,
)
END_COMPENSATION = _run(
    "end compensation", {R.COMPENSATING}, {R.COMPENSATED, R.COMPENSATION_FAILED}, Actor.SAGA
)

# ---- steps -------------------------------------------------------------------------------
CREATE = _step("create", {None}, {S.PENDING, S.READY}, Actor.STARTER)
# A retry reuses succeeded steps of the failed run, roots included (they are created READY).
REUSE = _step("reuse", {S.PENDING, S.READY}, {S.SUCCEEDED}, Actor.STARTER)
PROMOTE = _step("promote", {S.PENDING}, {S.READY}, Actor.ADVANCE)
CLAIM = _step("claim", {S.READY, S.RETRY_WAIT}, {S.RUNNING}, Actor.CLAIM)
RECORD = _step(
    "record",
    {S.RUNNING},
    {S.SUCCEEDED, S.RETRY_WAIT, S.FAILED, S.TIMED_OUT, S.CANCELLED},
    Actor.RECORD,
)
EXPIRE = _step("expire lease", {S.RUNNING}, {S.READY}, Actor.LEASE_REAPER)
RELEASE = _step("release lease", {S.RUNNING}, {S.READY}, Actor.SHUTDOWN)
FAN_OUT = _step("fan out", {S.RUNNING}, {S.RUNNING}, Actor.FAN_OUT, STEP_FANNED_OUT)
CREATE_ITEMS = _step("create items", {None}, {S.PENDING, S.READY}, Actor.FAN_OUT)
OPEN_WINDOW = _step("open window", {S.PENDING}, {S.READY}, Actor.FAN_OUT)
CANCEL_ITEMS = _step("cancel items", WAITING_STEP, {S.CANCELLED}, Actor.FAN_OUT)
FINISH_MAP = _step("finish map", {S.RUNNING}, {S.SUCCEEDED, S.FAILED, S.CANCELLED}, Actor.FAN_OUT)
SKIP = _step("skip", {S.PENDING}, {S.SKIPPED}, Actor.ADVANCE)
STOP = _step("stop", WAITING_STEP, {S.CANCELLED}, Actor.STOPPER)
CREATE_COMPENSATION = _step("create compensation", {None}, {S.PENDING, S.READY}, Actor.SAGA)
COMPENSATE = _step("mark compensated", {S.SUCCEEDED}, {S.COMPENSATED}, Actor.SAGA)

RUN_TRANSITIONS: tuple[Transition, ...] = (
    ACCEPT,
    HOLD,
    NOTE_UNCLAIMED,
    ADMIT,
    START,
    CANCEL_PENDING,
    REQUEST_CANCEL,
    END,
    END_COMPENSATION,
)
STEP_TRANSITIONS: tuple[Transition, ...] = (
    CREATE,
    REUSE,
    PROMOTE,
    CLAIM,
    RECORD,
    EXPIRE,
    RELEASE,
    FAN_OUT,
    CREATE_ITEMS,
    OPEN_WINDOW,
    CANCEL_ITEMS,
    FINISH_MAP,
    SKIP,
    STOP,
    CREATE_COMPENSATION,
    COMPENSATE,
)


def step_events(transition: Transition, rows: Iterable[Any], **extra: Any) -> list[Event]:
    """One event per changed step row (rows RETURNING run_id, step_id, role, map_index and the
    new status), of the type `transition` writes for that status."""
    events = []
    for row in rows:
        event = transition.event_for(row.status)
        if event is not None:
            events.append(Event(event, row.run_id, {**step_key(row), **extra}))
    return events


def step_key(row: Any) -> dict[str, Any]:
    """What names a step row in its events: step_id, and role and map_index when not the
    defaults (an action, not a map item)."""
    data: dict[str, Any] = {"step_id": row.step_id}
    if row.role != "action":
        data["role"] = row.role
    if row.map_index >= 0:
        data["map_index"] = row.map_index
    return data


def arrivals(entity: str) -> dict[str, tuple[str, frozenset[str | None]]]:
    """Per event type of `entity`: the status it records and every status it may follow
    (None: the row did not exist). What the history replay checks each event against."""
    table = RUN_TRANSITIONS if entity == "run" else STEP_TRANSITIONS
    found: dict[str, tuple[str, set[str | None]]] = {}
    for transition in table:
        for target in transition.targets:
            event = transition.event_for(target)
            if event is None:
                continue
            status, sources = found.setdefault(event, (target.value, set()))
            assert status == target.value, f"{event} means both {status} and {target}"
            sources.update(s.value if s is not None else None for s in transition.sources)
    return {event: (status, frozenset(sources)) for event, (status, sources) in found.items()}


def silent_arrivals(entity: str) -> frozenset[tuple[str | None, str]]:
    """The (from, to) changes of `entity` that write no event (only step rows inserted
    PENDING): the replay takes a row no event names to be in that state."""
    table = RUN_TRANSITIONS if entity == "run" else STEP_TRANSITIONS
    return frozenset(
        (s.value if s is not None else None, t.value)
        for transition in table
        for s in transition.sources
        for t in transition.targets
        if transition.event_for(t) is None
    )


def describe() -> str:
    """The table as text, one transition a line (for docs and reports)."""
    lines = []
    for transition in (*RUN_TRANSITIONS, *STEP_TRANSITIONS):
        sources = ", ".join(sorted(s.value if s else "(new)" for s in transition.sources))
        targets = ", ".join(
            f"{t.value} [{transition.event_for(t) or 'no event'}]"
            for t in sorted(transition.targets)
        )
        lines.append(
            f"{transition.entity:4} {transition.name:20} {sources} -> {targets}; {transition.by}"
        )
    return "\n".join(lines)
