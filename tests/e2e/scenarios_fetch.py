"""Fault scenarios around agent calls to an outside system (`ExternalServer`): transient and
permanent failures with retries and saga compensation (scenario 5), cancellation during a
fan-out (scenario 6), and a fan-out over 1,000 elements that keeps its concurrency window.

Every step is data-fetch-retry `fetch` (ledgered), reached through a TCP relay that loses some
replies: the agent did the work, the engine saw a reset and must not make it happen again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.e2e.chaos import ChaosPlatform
from tests.e2e.counts import Counts, count_all
from tests.polling import eventually

# The agent tries once per call: retrying is the engine's job here, per the step's policy.
FETCH = {"max_attempts": 1, "timeout_s": 30, "breaker": {"fail_max": 1000, "reset_timeout_s": 1}}
POLICY = {
    "max_attempts": 8,
    "initial_interval_s": 0.2,
    "backoff_coefficient": 2.0,
    "max_interval_s": 2.0,
    "jitter": 0.2,
}


def fetch(url: str, **extra: Any) -> dict[str, Any]:
    """Params of one fetch."""
    return {"url": url, **FETCH, **extra}


def saga_spec() -> dict[str, Any]:
    """stage → load → publish; stage and load are undone (in reverse) if the run fails."""
    names = ("stage", "load", "publish", "undo_stage", "undo_load")
    step = {"agent": "data-fetch-retry", "action": "fetch", "retry": POLICY, "timeout_s": 2}
    return {
        "name": "chaos-saga",
        "inputs": {name: {"type": "string", "required": True} for name in names},
        "steps": [
            {
                "id": "stage",
                **step,
                "params": fetch("${inputs.stage}"),
                "compensate": {"action": "fetch", "params": fetch("${inputs.undo_stage}")},
            },
            {
                "id": "load",
                **step,
                "depends_on": ["stage"],
                "params": fetch("${inputs.load}"),
                "compensate": {"action": "fetch", "params": fetch("${inputs.undo_load}")},
            },
            {"id": "publish", **step, "depends_on": ["load"], "params": fetch("${inputs.publish}")},
        ],
    }


@dataclass(frozen=True)
class Case:
    """How the outside system answers one run's five calls, and how the run must end."""

    stage: str
    load: str
    publish: str
    undo_stage: str
    undo_load: str
    expected: str


OK = "ok/{g}/{name}.csv"
UNDO = "undo/{g}/undo-{name}"
CASES = {
    # 503 twice, two connection resets, a hang longer than the step's timeout: all retried.
    "transient": Case(
        "flaky/503/2/{g}/stage.csv",
        "flaky/reset/2/{g}/load.csv",
        "flaky/hang/1/{g}/publish.csv",
        UNDO,
        UNDO,
        "SUCCEEDED",
    ),
    # 503 with Retry-After: 1 (twice), longer than the policy's first waits.
    "retry_after": Case("flaky/retryafter/2/{g}/stage.csv", OK, OK, UNDO, UNDO, "SUCCEEDED"),
    # 404: not retryable, fails at once; load then stage are undone.
    "rejected": Case(OK, OK, "missing/{g}/publish.csv", UNDO, UNDO, "COMPENSATED"),
    # 503 forever: retried up to max_attempts, then undone.
    "exhausted": Case(OK, OK, "down/{g}/publish.csv", UNDO, UNDO, "COMPENSATED"),
    # an undo that fails twice is itself retried
    "undo_retried": Case(
        OK, OK, "missing/{g}/publish.csv", UNDO, "undoflaky/2/{g}/undo-load", "COMPENSATED"
    ),
    # an undo that never works ends the run COMPENSATION_FAILED
    "undo_fails": Case(
        OK, OK, "missing/{g}/publish.csv", "down/{g}/undo-stage", UNDO, "COMPENSATION_FAILED"
    ),
}


def case_inputs(platform: ChaosPlatform, case: Case, group: str) -> dict[str, str]:
    """The five URLs of one run of `case`."""
    fields = ("stage", "load", "publish", "undo_stage", "undo_load")
    return {
        f: platform.external.url(getattr(case, f).format(g=group, name=f.removeprefix("undo_")))
        for f in fields
    }


async def flaky_agent(
    platform: ChaosPlatform, *, per_case: int, lose_every: int = 3, timeout_s: float = 180
) -> tuple[Counts, dict[str, list[dict[str, Any]]]]:
    """Scenario 5: runs of every case at once, with some agent replies lost on the way back.

    Returns the counts and, per case, each run's detail from GET /workflows/{id}."""
    started = time.monotonic()
    plan = [(name, f"{name}-{i}-{uuid.uuid4().hex[:6]}") for name in CASES for i in range(per_case)]
    inputs = [case_inputs(platform, CASES[name], group) for name, group in plan]
    platform.fetch_proxy.lose_replies_every = lose_every
    lost_before = platform.fetch_proxy.lost_replies
    try:
        run_ids = await platform.submit(saga_spec(), inputs)
        statuses = await platform.wait_terminal(run_ids, timeout_s)
    finally:
        platform.fetch_proxy.lose_replies_every = 0
    counts = await count_all(
        platform,
        "agent failures + saga",
        run_ids,
        faults=platform.fetch_proxy.lost_replies - lost_before,
        started=started,
    )
    details: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    unexpected = 0
    for (name, _group), run_id in zip(plan, run_ids, strict=True):
        unexpected += statuses.get(run_id) != CASES[name].expected
        details[name].append(await platform.run_detail(run_id))
    counts.notes["unexpected_status"] = unexpected
    groups = {group for _name, group in plan}
    served = platform.external.log.served()
    counts.data_duplicates = sum(
        n - 1 for path, n in served.items() if n > 1 and path.split("/")[-2] in groups
    )
    counts.notes["lost_replies"] = counts.faults
    return counts, details


def fanout_spec(concurrency: int, *, compensate: bool) -> dict[str, Any]:
    """prepare → fan (one fetch per element of `items`, at most `concurrency` at once)."""
    prepare: dict[str, Any] = {
        "id": "prepare",
        "agent": "data-fetch-retry",
        "action": "fetch",
        "params": fetch("${inputs.prepare}"),
        "retry": POLICY,
    }
    if compensate:
        prepare["compensate"] = {"action": "fetch", "params": fetch("${inputs.undo}")}
    return {
        "name": "chaos-fanout",
        "inputs": {
            "prepare": {"type": "string", "required": True},
            "undo": {"type": "string", "required": True},
            "items": {"type": "array", "required": True},
        },
        "steps": [
            prepare,
            {
                "id": "fan",
                "agent": "data-fetch-retry",
                "action": "fetch",
                "depends_on": ["prepare"],
                "map_over": "${inputs.items}",
                "map_concurrency": concurrency,
                "params": fetch("${item}"),
                "retry": POLICY,
                "timeout_s": 30,
            },
        ],
    }


def fanout_inputs(platform: ChaosPlatform, group: str, items: int, item_path: str) -> dict:
    """Inputs of one fan-out run over `items` URLs of `item_path` (formatted with g and i);
    the items are in group `<group>`, prepare and its undo in `<group>-prep`."""
    url = platform.external.url
    return {
        "prepare": url(f"ok/{group}-prep/prepare.csv"),
        "undo": url(f"undo/{group}-prep/undo-prepare"),
        "items": [url(item_path.format(g=group, i=i)) for i in range(items)],
    }


async def children(platform: ChaosPlatform, run_id: str) -> Counter[str]:
    """Statuses of a map_over step's children."""
    rows = await platform.query(
        "SELECT status, count(*) AS n FROM step_runs WHERE run_id = $1::uuid "
        "AND map_index >= 0 GROUP BY status",
        run_id,
    )
    return Counter({row["status"]: int(row["n"]) for row in rows})


async def cancel_fanout(
    platform: ChaosPlatform, *, items: int = 40, concurrency: int = 4, timeout_s: float = 120
) -> tuple[Counts, dict[str, Any]]:
    """Scenario 6: two fan-outs cancelled while their children run (one with compensation)."""
    started = time.monotonic()
    groups = {"plain": f"cancel-{uuid.uuid4().hex[:6]}", "saga": f"cancel-{uuid.uuid4().hex[:6]}"}
    item_path = "slow/800/{g}/i{i:04d}.csv"
    run_ids = {}
    for kind, group in groups.items():
        spec = fanout_spec(concurrency, compensate=kind == "saga")
        [run_ids[kind]] = await platform.submit(
            spec, [fanout_inputs(platform, group, items, item_path)]
        )
    for run_id in run_ids.values():  # cancel only once the fan-out is well under way
        await eventually(
            functools.partial(_succeeded_children, platform, run_id, concurrency), within_s=120
        )
    async with platform.api() as api:
        for run_id in run_ids.values():
            response = await api.post(f"/workflows/{run_id}/cancel")
            assert response.status_code == 202, response.text
    statuses = await platform.wait_terminal(list(run_ids.values()), timeout_s)
    ended = time.monotonic()
    await asyncio.sleep(2.0)  # calls the agent was still making finish; nothing new may start
    counts = await count_all(
        platform, "cancel during fan-out", list(run_ids.values()), faults=2, started=started
    )
    log = platform.external.log
    facts: dict[str, Any] = {"statuses": {k: statuses[r] for k, r in run_ids.items()}}
    for kind, group in groups.items():
        facts[kind] = {
            "children": await children(platform, run_ids[kind]),
            "peak": log.peak[group],
            "requests_after_end": log.requests_since(ended, group),
            "undone": [p for p in platform.external.undone if f"/{group}-prep/" in p],
            "finished_after_cancel": await _finished_after_cancel(platform, run_ids[kind]),
        }
    counts.notes["children"] = {k: dict(facts[k]["children"]) for k in groups}
    counts.notes["peak_concurrency"] = max(facts[k]["peak"] for k in groups)
    # Agents finish a call the engine hung up on (see the report): such effects are counted.
    counts.notes["effects_after_cancel"] = sum(facts[k]["finished_after_cancel"] for k in groups)
    return counts, facts


async def _succeeded_children(platform: ChaosPlatform, run_id: str, at_least: int) -> bool:
    return (await children(platform, run_id))["SUCCEEDED"] >= at_least


async def _finished_after_cancel(platform: ChaosPlatform, run_id: str) -> int:
    """Children recorded CANCELLED whose call the agent nevertheless completed."""
    [row] = await platform.query(
        "SELECT count(*) AS n FROM step_runs s JOIN agent_effects e "
        "ON e.agent = s.agent AND e.idempotency_key = s.run_id::text || ':' || s.step_id "
        "|| ':' || s.map_index WHERE s.run_id = $1::uuid AND s.map_index >= 0 "
        "AND s.status = 'CANCELLED' AND e.status = 'DONE'",
        run_id,
    )
    return int(row["n"])


async def bulk_fanout(
    platform: ChaosPlatform, *, items: int = 1000, concurrency: int = 10, timeout_s: float = 300
) -> tuple[Counts, dict[str, Any]]:
    """A fan-out over `items` elements: at most `concurrency` calls at once, output in order.

    Each call takes 100 ms at the outside system, so the window is kept full, not just bounded.
    """
    started = time.monotonic()
    group = f"bulk-{uuid.uuid4().hex[:6]}"
    [run_id] = await platform.submit(
        fanout_spec(concurrency, compensate=False),
        [fanout_inputs(platform, group, items, "slow/100/{g}/i{i:04d}.csv")],
    )
    await platform.wait_terminal([run_id], timeout_s)
    counts = await count_all(platform, f"fan-out of {items}", [run_id], faults=0, started=started)
    served = platform.external.log.served(f"/slow/100/{group}/")
    counts.data_duplicates = sum(n - 1 for n in served.values() if n > 1)
    [row] = await platform.query(
        "SELECT output FROM step_runs WHERE run_id = $1::uuid AND step_id = 'fan' "
        "AND map_index = -1",
        run_id,
    )
    output = row["output"]
    facts = {
        "status": (await platform.statuses([run_id]))[run_id],
        "peak": platform.external.log.peak[group],
        "served": len(served),
        "output_urls": [item["url"] for item in (as_json(output) or [])],
        "expected_urls": [
            platform.external.url(f"slow/100/{group}/i{i:04d}.csv") for i in range(items)
        ],
    }
    counts.notes["peak_concurrency"] = facts["peak"]
    return counts, facts


def as_json(value: Any) -> Any:
    """A JSONB value as asyncpg returns it (text), decoded."""
    return json.loads(value) if isinstance(value, str) else value
