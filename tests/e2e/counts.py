"""The counts the harness reports for a scenario's runs, taken from the agents' own records
(the `agent_effects` ledger, the data they wrote) and from a consumer group reading the Redis
streams, never from what the engine believes happened."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.state.history import StepKey, replay
from shared.state.machine import RUN_EVENT, STEP_EVENT, RunStatus, StepStatus
from tests.e2e.chaos import FINAL_EVENTS, TERMINAL, ChaosPlatform


@dataclass
class Counts:
    """What one scenario came to, counted from the agents' records and the streams."""

    scenario: str
    accepted: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    lost_runs: int = 0  # accepted, but missing or not terminal at the end
    duplicate_effects: int = 0  # ledger keys whose effect completed more than once
    missing_effects: int = 0  # succeeded steps without an executed effect in the ledger
    data_duplicates: int = 0  # rows or outside requests beyond one per effect
    events: int = 0  # outbox rows of the scenario's runs
    events_missing: int = 0  # outbox rows never read from the streams
    events_redelivered: int = 0  # extra deliveries (at-least-once relay), deduplicated by id
    # runs whose events, sorted by sequence, are no valid history: out of order, forbidden by
    # the transition table, or not ending where the run and its step rows are
    histories_invalid: int = 0
    faults: int = 0  # kills, outages or restarts injected
    elapsed_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def assert_clean(self) -> None:
        """The promise: nothing lost, nothing done twice, every event delivered, in order."""
        problems = {
            "lost_runs": self.lost_runs,
            "duplicate_effects": self.duplicate_effects,
            "missing_effects": self.missing_effects,
            "data_duplicates": self.data_duplicates,
            "events_missing": self.events_missing,
            "histories_invalid": self.histories_invalid,
        }
        bad = {k: v for k, v in problems.items() if v}
        assert not bad, f"{self.scenario}: {bad}; {self}"


async def count_runs(platform: ChaosPlatform, counts: Counts, run_ids: list[str]) -> None:
    """Outcomes, lost runs, and how many steps another engine took over after a lost lease."""
    [takeovers] = await platform.query(
        "SELECT count(*) AS n FROM step_runs s, jsonb_array_elements(s.attempt_log) a "
        "WHERE s.run_id = ANY($1::uuid[]) AND a->>'outcome' = 'lease_expired'",
        run_ids,
    )
    counts.notes["takeovers"] = int(takeovers["n"])
    statuses = await platform.statuses(run_ids)
    counts.accepted = len(run_ids)
    counts.outcomes = Counter(statuses.values())
    counts.lost_runs = sum(1 for r in run_ids if statuses.get(r) not in TERMINAL)
    failures = await platform.query(
        "SELECT failed_step, error FROM workflow_runs WHERE id = ANY($1::uuid[]) "
        "AND error IS NOT NULL",
        run_ids,
    )
    if failures:  # what went wrong, for the report (the caller decides whether it may)
        counts.notes["errors"] = Counter(
            f"{row['failed_step']}: {row['error'][:160]}" for row in failures
        ).most_common(5)


# An effect-bearing call is a step row that is not a map_over parent (the parent only fans out).
_LEDGER = """
WITH calls AS (
    SELECT s.agent, s.status,
           s.run_id::text || ':' || s.step_id
             || CASE WHEN s.map_index >= 0 THEN ':' || s.map_index ELSE '' END
             || CASE WHEN s.role <> 'action' THEN ':' || s.role ELSE '' END AS key
    FROM step_runs s
    WHERE s.run_id = ANY($1::uuid[])
      AND NOT EXISTS (SELECT 1 FROM step_runs c WHERE c.run_id = s.run_id
                      AND c.step_id = s.step_id AND c.role = s.role AND c.map_index >= 0)
      AND NOT (s.map_index = -1 AND s.status_reason = 'map_over list was empty')
)
SELECT
  (SELECT count(*) FROM agent_effects e
   WHERE split_part(e.idempotency_key, ':', 1) = ANY($2::text[]) AND e.executions > 1)
    AS duplicated,
  (SELECT count(*) FROM calls c
   WHERE c.status IN ('SUCCEEDED', 'COMPENSATED')
     AND NOT EXISTS (SELECT 1 FROM agent_effects e WHERE e.agent = c.agent
                     AND e.idempotency_key = c.key AND e.status = 'DONE'
                     AND e.executions >= 1)) AS missing
"""


async def count_effects(platform: ChaosPlatform, counts: Counts, run_ids: list[str]) -> None:
    """Duplicated and missing effects, from the agents' idempotency ledger."""
    [row] = await platform.query(_LEDGER, run_ids, run_ids)
    counts.duplicate_effects = int(row["duplicated"])
    counts.missing_effects = int(row["missing"])


async def count_events(
    platform: ChaosPlatform, counts: Counts, run_ids: list[str], timeout_s: float = 120
) -> None:
    """Compare each run's outbox rows with what the consumer group read from the streams."""
    deadline = time.monotonic() + timeout_s
    while True:  # the relay publishes a moment after the last commit
        [row] = await platform.query(
            "SELECT count(*) AS n FROM event_outbox WHERE run_id = ANY($1::uuid[]) "
            "AND published_at IS NULL",
            run_ids,
        )
        if row["n"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await platform.events.read()
    rows = await platform.query(
        "SELECT id, event_id::text AS event_id, event_type, run_id::text AS run_id "
        "FROM event_outbox WHERE run_id = ANY($1::uuid[]) ORDER BY id",
        run_ids,
    )
    counts.events = len(rows)
    delivered = platform.events.deliveries
    counts.events_missing = sum(1 for r in rows if r["event_id"] not in delivered)
    counts.events_redelivered = sum(
        len(delivered[r["event_id"]]) - 1 for r in rows if r["event_id"] in delivered
    )
    per_run: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["event_id"] in delivered:
            per_run.setdefault(r["run_id"], []).append(delivered[r["event_id"]][0])
    rows = await platform.query(
        "SELECT id::text AS run_id, status, NULL AS step_id, NULL AS role, NULL AS map_index "
        "FROM workflow_runs WHERE id = ANY($1::uuid[]) UNION ALL "
        "SELECT run_id::text, status, step_id, role, map_index FROM step_runs "
        "WHERE run_id = ANY($1::uuid[])",
        run_ids,
    )
    run_status: dict[str, str] = {}
    step_status: dict[str, dict[StepKey, str]] = {}
    for r in rows:
        if r["step_id"] is None:
            run_status[r["run_id"]] = r["status"]
        else:
            key = (r["step_id"], r["role"], r["map_index"])
            step_status.setdefault(r["run_id"], {})[key] = r["status"]
    invalid = {}
    for run_id in run_ids:
        events = sorted(per_run.get(run_id, []), key=_seq)
        problems = history_problems(events, run_status.get(run_id), step_status.get(run_id, {}))
        if problems:
            invalid[run_id] = problems
    counts.histories_invalid = len(invalid)
    if invalid:  # a few, for the report
        counts.notes["invalid_histories"] = dict(list(invalid.items())[:3])
    # How often a consumer reading one stream sees a run's events out of sequence order.
    wanted = set(run_ids)
    last: dict[tuple[str, str], int] = {}
    reordered = 0
    for stream, event in platform.events.arrivals:
        if event["run_id"] in wanted:
            where = (stream, event["run_id"])
            reordered += event["sequence"] < last.get(where, -1)
            last[where] = max(last.get(where, -1), event["sequence"])
    counts.notes["stream_reorderings"] = reordered


def _seq(event: dict[str, Any]) -> int:
    return int(event["sequence"])


def history_problems(
    events: list[dict[str, Any]], run_status: str | None, steps: dict[StepKey, str]
) -> list[str]:
    """What is wrong with one run's events in sequence order, as a history of its rows (empty:
    nothing). Accepted first and one ending last; each attempt's outcome after that attempt
    started; every event allowed by the transition table from the state before it; and the
    states they lead to are those of the run's row and of each of its step rows."""
    if not events or events[0]["type"] != RUN_EVENT[RunStatus.PENDING]:
        return ["the first event is not the run's acceptance"]
    problems = []
    endings = [i for i, e in enumerate(events) if e["type"] in FINAL_EVENTS]
    if len(endings) != 1 or endings[0] != len(events) - 1:
        problems.append(f"{len(endings)} endings, not one at the end")
    started: set[tuple[Any, ...]] = set()
    ends = (StepStatus.SUCCEEDED, StepStatus.RETRY_WAIT, StepStatus.TIMED_OUT, StepStatus.FAILED)
    outcome_types = {STEP_EVENT[s] for s in ends}
    for event in events:
        attempt = (event.get("step_id"), event.get("role"), event.get("map_index"))
        if event["type"] == STEP_EVENT[StepStatus.RUNNING]:
            started.add((*attempt, event.get("attempt")))
        elif (
            event["type"] in outcome_types
            and "attempt" in event
            and (*attempt, event["attempt"]) not in started
        ):
            problems.append(f"{event['type']} of {attempt} before its attempt started")
    return problems + replay(events).compare(run_status, steps)


async def count_all(
    platform: ChaosPlatform, name: str, run_ids: list[str], *, faults: int, started: float
) -> Counts:
    """Every count for the scenario's runs."""
    counts = Counts(name, faults=faults)
    await count_runs(platform, counts, run_ids)
    await count_effects(platform, counts, run_ids)
    await count_events(platform, counts, run_ids)
    counts.elapsed_s = time.monotonic() - started
    return counts
