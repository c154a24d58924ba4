"""The deciders: the spec's fixed settings, the limiter alone, and the learned planner.

All three expose `plan(observations, bounds) -> ConnectionPlan` and `probe_requests`, so the
collector never branches on which one it holds.

The learned planner is a nearest-neighbour policy over a grid of candidate plans: training
ran every candidate on every training source in the simulator, so each training source carries
a score per candidate; a new source's probe is matched to its k nearest training sources and
the candidate with the best mean score among them is taken (its rate scaled by what the probe
measured). It needs no library at inference and answers in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.connection_optimization.limiter import UNSEEDED
from ml.connection_optimization.plan import (
    PROBE_REQUESTS,
    Bounds,
    ConnectionPlan,
    ProbeStats,
    clamp_plan,
)

# The collect action's defaults: four parallel requests (its `concurrency`), the default page
# size, no rate limit unless the spec declares one, retries as the spec says.
FIXED_CONCURRENCY = 4


class FixedPlanner:
    """The baseline: the spec's fixed settings, held for the whole collect."""

    probe_requests = 0

    def plan(self, observations: ProbeStats, bounds: Bounds) -> ConnectionPlan:
        """The spec's settings, whatever the probe saw."""
        return clamp_plan(
            ConnectionPlan(
                concurrency=FIXED_CONCURRENCY,
                page_size=bounds.default_page_size,
                rate_per_s=bounds.max_rate_per_s,
                adaptive=False,
                min_concurrency=FIXED_CONCURRENCY,
                max_concurrency=FIXED_CONCURRENCY,
                decider="fixed settings of the spec",
            ),
            bounds,
        )


class LimiterOnlyPlanner:
    """The second baseline: the adaptive limiter with Netflix's defaults, nothing learned."""

    probe_requests = 0

    def plan(self, observations: ProbeStats, bounds: Bounds) -> ConnectionPlan:
        """The unseeded limiter inside the spec's bounds."""
        return clamp_plan(UNSEEDED, bounds)


@dataclass(frozen=True)
class Candidate:
    """A plan relative to what the probe measured."""

    concurrency: int
    headroom: int  # max concurrency = concurrency * headroom
    page_size: int
    rate_share: float | None  # rate = share * measured rate; None: unpaced

    def materialize(self, stats: ProbeStats, bounds: Bounds) -> ConnectionPlan:
        """The concrete plan for a source with these probe figures."""
        base = probe_rate(stats)
        rate = None if self.rate_share is None or base is None else self.rate_share * base
        return clamp_plan(
            ConnectionPlan(
                concurrency=self.concurrency,
                page_size=self.page_size,
                rate_per_s=rate,
                min_concurrency=1,
                max_concurrency=self.concurrency * self.headroom,
                max_rate_per_s=None if base is None else 2.0 * base,
                decider="model",
                detail={"candidate": self.key()},
            ),
            bounds,
        )

    def key(self) -> str:
        """A short name for reports."""
        rate = "free" if self.rate_share is None else f"{self.rate_share:g}r"
        return f"c{self.concurrency}x{self.headroom}/p{self.page_size}/{rate}"


def probe_rate(stats: ProbeStats) -> float | None:
    """The rate the source seems to allow: advertised, or achieved when it pushed back."""
    if stats.rate_hint_per_s:
        return stats.rate_hint_per_s
    if stats.rejected and stats.ok_rate_per_s:
        return stats.ok_rate_per_s
    return None


def candidate_grid() -> list[Candidate]:
    """Every plan training tries on every source."""
    return [
        Candidate(c, h, p, r)
        for c in (1, 2, 4, 8, 16, 32)
        for h in (1, 4)
        for p in (100, 250, 500, 1000)
        for r in (None, 0.9)
    ]


class KnnPlanner:
    """The learned planner: the best candidate among the k most similar training sources."""

    probe_requests = PROBE_REQUESTS

    def __init__(
        self,
        candidates: list[Candidate],
        features: np.ndarray,
        scores: np.ndarray,
        *,
        k: int = 5,
    ) -> None:
        self.candidates = candidates
        self.mean = features.mean(axis=0)
        self.scale = features.std(axis=0) + 1e-6
        self.features = (features - self.mean) / self.scale
        self.scores = scores  # (sources, candidates)
        self.k = min(k, len(features))
        self._concurrency = np.array([c.concurrency for c in candidates])
        self._page_size = np.array([c.page_size for c in candidates])

    def choose(self, observations: ProbeStats, bounds: Bounds | None = None) -> tuple[int, float]:
        """Index of the chosen candidate and its mean score among the neighbours."""
        return self.choose_from_vector(np.asarray(observations.features()), bounds)

    def choose_from_vector(
        self, features: np.ndarray, bounds: Bounds | None = None
    ) -> tuple[int, float]:
        """`choose` for a raw feature vector (leave-one-out in training uses it)."""
        x = (features - self.mean) / self.scale
        dist = np.sqrt(((self.features - x) ** 2).sum(axis=1))
        near = np.argpartition(dist, self.k - 1)[: self.k]
        weights = 1.0 / (dist[near] + 0.1)
        expected = (self.scores[near] * weights[:, None]).sum(axis=0) / weights.sum()
        if bounds is not None:
            # Only candidates the bounds allow as they are: a clamped one is another plan,
            # whose score the neighbours never measured.
            allowed = (self._concurrency <= bounds.max_concurrency) & (
                self._page_size <= max(bounds.max_page_size, int(self._page_size.min()))
            )
            if allowed.any():
                expected = np.where(allowed, expected, -np.inf)
        best = int(np.argmax(expected))
        return best, float(expected[best])

    def plan(self, observations: ProbeStats, bounds: Bounds) -> ConnectionPlan:
        """The plan for a source whose probe measured `observations`."""
        index, expected = self.choose(observations, bounds)
        plan = self.candidates[index].materialize(observations, bounds)
        detail = {**plan.detail, "expected_score": round(expected, 4)}
        return ConnectionPlan(**{**plan.to_dict(), "detail": detail})
