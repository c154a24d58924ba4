"""Deciders against the flaky-source simulator: traces to learn from, and the held-out score.

COST (the primary score, lower is better) is the mean over episodes of
    share of the step's deadline spent before the outcome (success or giving up)
  + 0.1 per failed retry (a wasted call, load on a source that is failing)
  + 1.0 if the policy gave up on a failure that would have recovered within the limits.
So a policy is paid for being quick, for leaving a failing source alone and for not giving
up too early, in that order of weight; every figure is also reported on its own.
"""

from __future__ import annotations

import copy
import math
import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from ml.retry_strategy.policy import GRID, FailureContext, LearnedRetry, clamp, keys
from ml.sim.flaky import Episode, Limits, Outcome, run_episode

WASTE_WEIGHT = 0.1
MISS_WEIGHT = 1.0


def decide_fn(predictor: Any) -> Any:
    """The simulator's decide callable for `predictor`, hard limits clamped outside it."""

    def decide(features: dict[str, Any]) -> tuple[bool, float]:
        failure = FailureContext.from_features(features)
        decision = clamp(predictor.decide(failure), failure)
        return decision.retry, decision.delay_s

    return decide


def run(predictor: Any, episodes: list[Episode]) -> list[Outcome]:
    """Each episode with its own copy of `predictor` (its own client: AWS's quota is per
    client and the simulator has only failing calls, none of the successes that refill it)."""
    fresh = getattr(predictor, "fresh", None)
    return [
        run_episode(ep, decide_fn(fresh() if fresh else copy.deepcopy(predictor)))
        for ep in episodes
    ]


def cost(outcomes: list[Outcome]) -> float:
    """The primary score: mean episode cost (see the module docstring)."""
    return float(np.mean([o.cost() for o in outcomes]))


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    """Every figure of a set of outcomes."""
    successes = [o for o in outcomes if o.success]
    recoverable = [o for o in outcomes if o.success or o.gave_up_recoverable]
    return {
        "cost": cost(outcomes),
        "success_rate": len(successes) / max(len(outcomes), 1),
        "time_to_success_s": float(np.mean([o.time_s for o in successes])) if successes else 0.0,
        "wasted_calls": float(np.mean([o.wasted_calls for o in outcomes])),
        "gave_up_recoverable": sum(o.gave_up_recoverable for o in outcomes)
        / max(len(recoverable), 1),
        "load_on_failing_source": float(np.mean([o.load_calls for o in outcomes])),
    }


def by_family(outcomes: list[Outcome]) -> dict[str, float]:
    """The cost per scenario family."""
    grouped: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        grouped[outcome.family].append(outcome)
    return {family: cost(group) for family, group in sorted(grouped.items())}


class Explorer:
    """A behaviour policy that visits many states: random waits, never gives up early."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: list[dict[str, Any]] = []

    def decide(self, features: dict[str, Any]) -> tuple[bool, float]:
        self.seen.append(features)
        base = features["retry_after_s"] if self.rng.random() < 0.5 else 0.0
        return True, (base or 0.0) + math.exp(self.rng.uniform(math.log(0.05), math.log(400)))


class Accumulator:
    """Per cell and grid delay: the summed success chance and its weight."""

    def __init__(self) -> None:
        self.sums: dict[tuple[Any, ...], np.ndarray] = defaultdict(lambda: np.zeros(len(GRID)))
        self.weights: dict[tuple[Any, ...], np.ndarray] = defaultdict(lambda: np.zeros(len(GRID)))

    def add(self, failure: FailureContext, target: np.ndarray, weight: np.ndarray) -> None:
        for key in keys(failure):
            self.sums[key] += target * weight
            self.weights[key] += weight

    def model(self, **kwargs: Any) -> LearnedRetry:
        table = {k: self.sums[k] / np.maximum(w, 1e-9) for k, w in self.weights.items()}
        counts = {k: float(w.min()) for k, w in self.weights.items()}
        return LearnedRetry(table=table, counts=counts, **kwargs)


def simulator_samples(episodes: list[Episode], seed: int, into: Accumulator) -> int:
    """Add the exact success chance at every grid delay after each failure explored."""
    added = 0
    roomy = Limits(max_attempts=12, max_interval_s=900.0, deadline_s=3600.0)
    ones = np.ones(len(GRID))
    for index, ep in enumerate(episodes):
        explorer = Explorer(seed * 7919 + index)
        # Roomy limits, so late states (long elapsed times, many attempts) are visited too.
        run_episode(replace(ep, limits=roomy), explorer.decide)
        for features in explorer.seen:
            failure = FailureContext.from_features(features)
            anchor = failure.retry_after_s or 0.0
            start = failure.elapsed_s + anchor
            target = np.array([ep.success_probability(start + g) for g in GRID])
            into.add(failure, target, ones)
            added += 1
    return added


def search(
    acc: Accumulator, episodes: list[Episode], params: dict[str, Any]
) -> tuple[LearnedRetry, dict[str, float]]:
    """The decision thresholds with the lowest cost on (training) episodes."""
    best: tuple[float, LearnedRetry] | None = None
    tried: dict[str, float] = {}
    for miss in (0.1, 0.2, 0.4, 0.8, 1.5):
        for give_up in (0.05, 0.1, 0.2, 0.35, 0.5):
            model = acc.model(miss_cost=miss, give_up_below=give_up, params=params)
            score = cost(run(model, episodes))
            tried[f"search_miss{miss}_giveup{give_up}"] = score
            if best is None or score < best[0]:
                best = (score, model)
    assert best is not None
    return best[1], tried
