"""Running a planner against simulated sources, and the score that judges it.

Every planner goes through the same client: it sends `probe_requests` requests one at a time
(the model's probe; the baselines ask for none), asks the planner for a plan from what they
measured, then walks the rest of the pages under a `Pacer` seeded with that plan. The per-request
retry wait is the collector's (stamina) for everyone, so only the pacing differs.

Primary score of an episode (higher is better):
    throughput / ideal throughput                       (records/s the source could sustain)
    - (429s + overload 503s + 5xx) / requests            (the load the client wasted)
    - 0.1 * log2(max(1, p99 latency / latency budget))   (latency it imposed on the source)
The budget is twice an unloaded 100-record page: pushing the source into its queue costs, and
big pages cost only as far as they push p99 past it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from ml.connection_optimization.limiter import Pacer
from ml.connection_optimization.plan import (
    PROBE_REQUESTS,
    Bounds,
    ConnectionPlan,
    ProbeRecorder,
    ProbeStats,
    clamp_plan,
)
from ml.sim.capacity import Answer, Outcome, SourceSpec, run_episode

LATENCY_WEIGHT = 0.1
SIM_BOUNDS = Bounds(min_concurrency=1, max_concurrency=64, max_page_size=1000)


class Planner(Protocol):
    """The interface every decider (model or baseline) exposes."""

    probe_requests: int

    def plan(self, observations: ProbeStats, bounds: Bounds) -> ConnectionPlan: ...


class PlannedClient:
    """Probe, plan, then pace: the simulator's stand-in for the collector."""

    def __init__(self, planner: Planner, bounds: Bounds) -> None:
        self.planner = planner
        self.bounds = bounds
        self.probe = ProbeRecorder(getattr(planner, "probe_requests", PROBE_REQUESTS))
        self.pacer: Pacer | None = None
        self.stats: ProbeStats | None = None
        if self.probe.done:
            self._plan()

    def _plan(self) -> None:
        self.stats = self.probe.stats()
        plan = clamp_plan(self.planner.plan(self.stats, self.bounds), self.bounds)
        self.pacer = Pacer(plan)

    def page_size(self) -> int:
        """The plan's page size; the spec's default while probing."""
        return self.pacer.plan.page_size if self.pacer else self.bounds.default_page_size

    def send_delay(self, now: float, in_flight: int) -> float | None:
        """Probes go one at a time; afterwards the pacer decides."""
        if self.pacer is None:
            return None if in_flight >= 1 else 0.0
        return self.pacer.delay(now, in_flight)

    def sent(self, now: float) -> None:
        """Tell whoever paces."""
        if self.pacer is None:
            self.probe.sent(now)
        else:
            self.pacer.sent(now)

    def answered(self, now: float, answer: Answer, in_flight: int) -> None:
        """Probe answers feed the plan; later ones the limiter."""
        if self.pacer is None:
            self.probe.answered(
                now,
                status=answer.status,
                latency_s=answer.latency_s,
                records=answer.records,
                retry_after_s=answer.retry_after_s,
                rate_hint_per_s=answer.rate_hint_per_s,
            )
            if self.probe.done:
                self._plan()
            return
        self.pacer.answered(
            now,
            status=answer.status,
            latency_s=answer.latency_s,
            retry_after_s=answer.retry_after_s,
            in_flight=in_flight,
        )


@dataclass(frozen=True)
class Scored:
    """One episode's figures."""

    score: float
    throughput_share: float
    wasted_share: float
    p99_ratio: float
    rejected: int
    errors: int
    p99_s: float
    throughput: float


def score_outcome(source: SourceSpec, outcome: Outcome) -> Scored:
    """The primary score of one episode and the figures it combines."""
    share = min(1.5, outcome.throughput / source.ideal_throughput())
    if outcome.records < source.records:  # gave up or ran out of time: no credit for the rest
        share *= outcome.records / source.records
    wasted = (outcome.rejected + outcome.errors) / max(outcome.requests, 1)
    ratio = outcome.p99_s / source.comfortable_latency_s()
    score = share - wasted - LATENCY_WEIGHT * math.log2(max(1.0, ratio))
    return Scored(
        score,
        share,
        wasted,
        ratio,
        outcome.rejected,
        outcome.errors,
        outcome.p99_s,
        outcome.throughput,
    )


def evaluate(
    planner: Planner, sources: list[SourceSpec], *, seed: int, bounds: Bounds = SIM_BOUNDS
) -> list[Scored]:
    """One episode per source; the same seed gives the same figures."""
    return [
        score_outcome(src, run_episode(src, PlannedClient(planner, bounds), seed=seed))
        for src in sources
    ]


def summary(scored: list[Scored]) -> dict[str, float]:
    """Means (and the p99 ratio's median) over episodes."""
    n = max(len(scored), 1)
    ratios = sorted(s.p99_ratio for s in scored)
    return {
        "score": sum(s.score for s in scored) / n,
        "throughput_share": sum(s.throughput_share for s in scored) / n,
        "wasted_share": sum(s.wasted_share for s in scored) / n,
        "rejected_per_episode": sum(s.rejected for s in scored) / n,
        "errors_per_episode": sum(s.errors for s in scored) / n,
        "p99_ratio_median": ratios[len(ratios) // 2] if ratios else 0.0,
        "p99_s_mean": sum(s.p99_s for s in scored) / n,
    }


def grouped(sources: list[SourceSpec], scored: list[Scored]) -> dict[str, dict[str, float]]:
    """`summary` per scenario family of episodes already scored."""
    families: dict[str, list[Scored]] = {}
    for src, s in zip(sources, scored, strict=True):
        families.setdefault(src.family, []).append(s)
    return {family: summary(items) for family, items in families.items()}
