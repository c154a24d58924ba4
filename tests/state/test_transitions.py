"""The transition table itself: each event means one status, every status can be reached and
left as the design says, and the table names exactly the event types there are."""

from __future__ import annotations

from shared.state.machine import EVENT_TYPES, TERMINAL_RUN, TERMINAL_STEP, RunStatus, StepStatus
from shared.state.transitions import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    arrivals,
    describe,
    silent_arrivals,
)


def test_each_event_records_one_status() -> None:
    # arrivals() refuses a table where one event type would mean two statuses
    assert arrivals("run")["ingestion.workflow.waiting"] == ("PENDING", frozenset({"PENDING"}))
    status, sources = arrivals("step")["ingestion.step.ready"]
    assert status == "READY" and sources == {None, "PENDING", "RUNNING"}


def test_every_status_is_reached_and_only_ends_end() -> None:
    for table, statuses, terminal in (
        (RUN_TRANSITIONS, RunStatus, TERMINAL_RUN),
        (STEP_TRANSITIONS, StepStatus, TERMINAL_STEP),
    ):
        reached = {t for transition in table for t in transition.targets}
        left = {s for transition in table for s in transition.sources} - {None}
        assert reached == set(statuses)
        assert left >= set(statuses) - terminal  # nothing open is stuck
        # only the saga leaves an end: a succeeded step becomes COMPENSATED
        assert left & terminal <= {StepStatus.SUCCEEDED}


def test_the_table_names_every_event_type() -> None:
    written = {
        transition.event_for(target)
        for transition in (*RUN_TRANSITIONS, *STEP_TRANSITIONS)
        for target in transition.targets
    }
    assert written - {None} == EVENT_TYPES
    # the one change without an event: a step row inserted PENDING
    assert silent_arrivals("step") == {(None, "PENDING")}
    assert silent_arrivals("run") == set()
    assert describe().count("\n") == len(RUN_TRANSITIONS) + len(STEP_TRANSITIONS) - 1
