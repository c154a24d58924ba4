"""A run's events replayed against the transition table: the states they say its rows are in,
and every event the table does not allow. Compared with the rows themselves, this shows
whether the event stream is a faithful history of the state tables (tests/state, the fault
harness)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.state.transitions import arrivals, silent_arrivals

StepKey = tuple[str, str, int]  # step_id, role, map_index

_RUN = arrivals("run")
_STEP = arrivals("step")
# What a step row no event has named yet may be: absent, or inserted without an event.
_UNSEEN_STEP = frozenset({None} | {to for source, to in silent_arrivals("step") if source is None})
_SILENT_STEP = frozenset(to for source, to in silent_arrivals("step") if source is None)


def step_key(event: Mapping[str, Any]) -> StepKey:
    """The step row an event names (see transitions.step_key)."""
    return (event["step_id"], event.get("role", "action"), int(event.get("map_index", -1)))


@dataclass
class Replay:
    """Where one run's events leave it and its step rows, and what the table forbade."""

    run: str | None = None
    steps: dict[StepKey, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def compare(self, run_status: str | None, steps: Mapping[StepKey, str]) -> list[str]:
        """The problems, and every difference between the replayed states and the rows."""
        problems = list(self.problems)
        if run_status != self.run:
            problems.append(f"run is {run_status}, its events say {self.run}")
        for key, status in steps.items():
            said = self.steps.get(key)
            if said is None and status not in _SILENT_STEP:
                problems.append(f"step {key} is {status}, no event says so")
            elif said is not None and said != status:
                problems.append(f"step {key} is {status}, its events say {said}")
        problems += [f"events name step {key}, no such row" for key in self.steps.keys() - steps]
        return problems


def replay(events: Iterable[Mapping[str, Any]]) -> Replay:
    """Apply one run's events, in sequence order, to the table. Events of other kinds (an
    agent's health) are ignored; an event type of neither table is a problem."""
    result = Replay()
    for event in events:
        kind = event["type"]
        if kind in _RUN:
            status, sources = _RUN[kind]
            if result.run not in sources:
                result.problems.append(f"{kind} while the run is {result.run}")
            result.run = status
        elif kind in _STEP:
            status, sources = _STEP[kind]
            key = step_key(event)
            current = result.steps.get(key)
            possible = _UNSEEN_STEP if current is None else {current}
            if not possible & sources:
                was = current or "PENDING or absent"
                result.problems.append(f"{kind} for step {key} while it is {was}")
            result.steps[key] = status
        elif kind.startswith("ingestion.workflow.") or kind.startswith("ingestion.step."):
            result.problems.append(f"{kind} is in no transition")
    return result
