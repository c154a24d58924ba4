"""Replaying a policy on a simulated source, at an equal run budget.

Equal budget, concretely: the fixed interval spends B = ⌊horizon / budget interval⌋ runs on a
scenario. Each adaptive policy is replayed with its budget interval scaled by s, and s is found
by a secant search on log(runs) against log(s) (at most `MAX_REPLAYS` replays, stopping within
1 % of B); its staleness, empty runs and age are then interpolated, linearly in log(runs),
between the two replays closest to B on either side. So every policy is scored at B runs exactly.

Staleness is per row: how long each new row waited between its change and the collect that
found it (rows still waiting at the end of the horizon count until then), divided by half the
budget interval (what a fixed interval makes a row wait on average), so a fixed interval scores
about 1 on any source and 0.8 means rows arrive 20 % fresher for the same number of runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ml.scheduling_intelligence.policy import Bounds
from ml.sim.changes import ChangeTrace, make_trace

MAX_REPLAYS = 5


@dataclass(frozen=True)
class Scenario:
    trace: ChangeTrace
    bounds: Bounds

    @property
    def budget_runs(self) -> int:
        """B: the runs the fixed interval spends over the horizon."""
        return int(self.trace.horizon_s // self.bounds.budget_s)


@dataclass(frozen=True)
class Replay:
    runs: float
    empty_runs: float
    staleness: float  # mean wait per row / (budget interval / 2)
    age: float  # time-averaged age of the oldest uncollected change / budget interval


def scenario(family: str, seed: int, horizon_s: float) -> Scenario:
    """A source and the bounds a schedule would give it, from (family, seed)."""
    trace = make_trace(family, seed, horizon_s)
    rng = np.random.default_rng([7, seed, len(family)])
    # The budget relative to how often the source changes: from eager to frugal, but kept to
    # 40-400 runs over the horizon so every scenario weighs alike and replays stay quick.
    budget = trace.mean_change_gap_s * math.exp(rng.uniform(math.log(0.5), math.log(6)))
    budget = min(max(budget, horizon_s / 400), horizon_s / 40)
    lower = max(60.0, budget / 10)
    return Scenario(trace, Bounds(lower, budget * 12, budget))


def replay(policy: Any, sc: Scenario, budget_scale: float = 1.0) -> Replay:
    """Run `policy` on the scenario from t=0 to the horizon; its figures."""
    trace, horizon = sc.trace, sc.trace.horizon_s
    bounds = replace(sc.bounds, budget_interval_s=sc.bounds.budget_s * budget_scale)
    at: list[float] = [0.0]
    rows: list[int] = [0]
    delay = age = 0.0
    runs = empty = 0
    decide = policy.decide
    while True:
        interval = decide(at[-400:], rows[-400:], bounds).interval_s
        now = at[-1] + interval
        if now > horizon:
            break
        found = trace.collect(at[-1], now)
        delay += trace.delay_row_s(at[-1], now)
        age += trace.age_area(at[-1], now)
        runs += 1
        empty += found.rows == 0
        at.append(now)
        rows.append(found.rows)
    delay += trace.delay_row_s(at[-1], horizon)
    age += trace.age_area(at[-1], horizon)
    total_rows = max(trace.rows_between(0.0, horizon), 1)
    half = sc.bounds.budget_s / 2
    return Replay(runs, empty, delay / total_rows / half, age / horizon / sc.bounds.budget_s)


def _interpolate(points: list[tuple[float, Replay]], target: float) -> Replay:
    """The figures at exactly `target` runs, from replays (linear in log runs)."""
    ordered = sorted(points, key=lambda p: p[1].runs)
    below = [p for p in ordered if p[1].runs <= target]
    above = [p for p in ordered if p[1].runs >= target]
    if below and above:
        a, b = below[-1][1], above[0][1]
    else:  # every replay on one side: extrapolate from the two nearest
        near = sorted(ordered, key=lambda p: abs(p[1].runs - target))[:2]
        a, b = near[0][1], near[-1][1]
    if a.runs == b.runs:
        return replace(a, runs=target)
    w = (math.log(target) - math.log(a.runs)) / (math.log(b.runs) - math.log(a.runs))

    def mix(x: float, y: float) -> float:
        return x + w * (y - x)

    return Replay(
        target, mix(a.empty_runs, b.empty_runs), mix(a.staleness, b.staleness), mix(a.age, b.age)
    )


def at_budget(policy: Any, sc: Scenario) -> Replay:
    """The policy's figures at exactly the fixed interval's run count (see the module doc)."""
    target = sc.budget_runs
    points: list[tuple[float, Replay]] = []
    scale = 1.0
    for _ in range(MAX_REPLAYS):
        result = replay(policy, sc, scale)
        points.append((scale, result))
        if abs(result.runs - target) <= 0.01 * target:
            break
        if len(points) == 1:
            scale *= max(result.runs, 1) / target
        else:
            (s0, r0), (s1, r1) = points[-2], points[-1]
            slope = (math.log(max(r1.runs, 1)) - math.log(max(r0.runs, 1))) / (
                math.log(s1) - math.log(s0) if s1 != s0 else 1.0
            )
            if slope >= -0.05:  # runs barely follow the scale (bounds bite): plain ratio
                scale *= max(result.runs, 1) / target
            else:
                scale = math.exp(
                    math.log(s1) + (math.log(target) - math.log(max(r1.runs, 1))) / slope
                )
        scale = min(max(scale, 1 / 16), 16)
    return _interpolate(points, target)


def evaluate(policy: Any, scenarios: list[Scenario]) -> list[Replay]:
    """`at_budget` on every scenario."""
    return [at_budget(policy, sc) for sc in scenarios]
