"""Retry deciders: the learned one and the baselines, all with `decide(FailureContext)`.

Every decider answers the same question (retry or give up, and after how long) from the same
features; `clamp` then enforces the spec's hard limits (attempts, longest interval, deadline)
outside the decider, so no model can break them. Agents and the engine call
`clamp(decider.decide(failure), failure)` and never branch on which decider they hold.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from shared.spec.models import RetryPolicy

# 501 and 505 will not change on a retry; 408/425/429 will (as agents/data_fetch_retry/policy).
_PERMANENT_5XX = {501, 505}
_TRANSIENT_4XX = {408, 425, 429}


@dataclass(frozen=True)
class FailureContext:
    """One failed attempt and what is known around it: the decider's whole input."""

    status: int | None = None  # HTTP status; None for a transport failure
    error_class: str = "http"  # "http", "timeout", "connect", or an agent error code
    retry_after_s: float | None = None
    attempt: int = 1  # the attempt that just failed (1 for the first)
    elapsed_s: float = 0.0  # since the first attempt started
    host_error_rate: float = 0.0  # recent share of failed calls to this host
    host_latency_ms: float = 100.0  # recent mean latency of calls to this host
    remaining_s: float = math.inf  # until the step's deadline
    attempts_left: int = 1  # attempts the spec still allows after this one
    max_interval_s: float = math.inf  # the spec's longest wait between attempts
    retryable: bool | None = None  # the error's own verdict, when it has one

    @classmethod
    def from_features(cls, features: dict[str, Any]) -> FailureContext:
        """From the simulator's feature dict (same names)."""
        return cls(**features)


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float
    reason: str


def transient(failure: FailureContext) -> bool:
    """Whether another attempt could help at all (a property of the error)."""
    if failure.retryable is not None:
        return failure.retryable
    if failure.status is None:
        return failure.error_class in ("timeout", "connect")
    status = failure.status
    return status in _TRANSIENT_4XX or (status >= 500 and status not in _PERMANENT_5XX)


def clamp(decision: RetryDecision, failure: FailureContext) -> RetryDecision:
    """The decision within the spec's hard limits: attempts, longest interval, deadline."""
    if not decision.retry:
        return decision
    if failure.attempts_left <= 0:
        return RetryDecision(False, 0.0, f"max attempts reached ({decision.reason})")
    delay = max(0.0, min(decision.delay_s, failure.max_interval_s))
    if delay >= failure.remaining_s:
        return RetryDecision(False, 0.0, f"the deadline comes first ({decision.reason})")
    if delay != decision.delay_s:
        return replace(decision, delay_s=delay, reason=f"{decision.reason}; capped at max_interval")
    return decision


@dataclass
class StaticExponential:
    """The spec's RetryPolicy: exponential backoff with jitter, Retry-After honoured up to
    max_interval (what `services/workflow_engine/step_call.retry_delay` does)."""

    initial_interval_s: float = 1.0
    backoff_coefficient: float = 2.0
    jitter: float = 0.2
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def fresh(self) -> StaticExponential:
        """A copy with its random stream restarted (one per evaluated episode)."""
        return StaticExponential(
            self.initial_interval_s, self.backoff_coefficient, self.jitter, self.seed
        )

    def decide(self, failure: FailureContext) -> RetryDecision:
        """Backoff for attempt `attempt + 1`; give up on a permanent error."""
        if not transient(failure):
            return RetryDecision(False, 0.0, "permanent error")
        policy = RetryPolicy(
            max_attempts=100,
            initial_interval_s=self.initial_interval_s,
            backoff_coefficient=self.backoff_coefficient,
            max_interval_s=min(failure.max_interval_s, 86400.0),
            jitter=self.jitter,
        )
        delay = policy.delay_before(failure.attempt + 1, self._rng)
        if failure.retry_after_s is not None:
            delay = max(delay, min(failure.retry_after_s, policy.max_interval_s or delay))
            return RetryDecision(True, delay, "exponential backoff, Retry-After honoured")
        return RetryDecision(True, delay, "exponential backoff")


@dataclass
class AwsStandard:
    """AWS SDKs' standard retry mode: 3 attempts, full-jitter backoff capped at 20 s, and a
    retry quota (500 tokens, 5 per retry, 10 per timeout retry, refunded on success)."""

    max_attempts: int = 3
    cap_s: float = 20.0
    quota: float = 500.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _tokens: float = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._tokens = self.quota

    def fresh(self) -> AwsStandard:
        """A new client: full quota, random stream restarted."""
        return AwsStandard(self.max_attempts, self.cap_s, self.quota, self.seed)

    def decide(self, failure: FailureContext) -> RetryDecision:
        """Full-jitter exponential backoff while attempts and quota last."""
        if not transient(failure):
            return RetryDecision(False, 0.0, "permanent error")
        if failure.attempt >= self.max_attempts:
            return RetryDecision(False, 0.0, "AWS standard: 3 attempts")
        cost = 10.0 if failure.error_class == "timeout" else 5.0
        if self._tokens < cost:
            return RetryDecision(False, 0.0, "AWS standard: retry quota exhausted")
        self._tokens -= cost
        delay = self._rng.random() * min(self.cap_s, 2.0 ** (failure.attempt - 1))
        return RetryDecision(True, delay, "AWS standard: full-jitter backoff")

    def succeeded(self, retried: bool) -> None:
        """A success refunds the quota (the retry's cost when it took retries, else 1)."""
        self._tokens = min(self.quota, self._tokens + (5.0 if retried else 1.0))


# Delays after the anchor (Retry-After when given, else now) the model weighs, in seconds.
GRID = np.array([0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 240, 480, 900], dtype=float)
MIN_CELL = 20  # samples a cell needs before it is trusted over its coarser parent


def failure_class(failure: FailureContext) -> str:
    """The coarse kind of failure the model conditions on."""
    if failure.status is None:
        return failure.error_class if failure.error_class in ("timeout", "connect") else "other"
    status = failure.status
    if status in (429, 503, 500):
        return str(status)
    if status in (502, 504):
        return "gateway"
    if status == 408:
        return "timeout"
    return "5xx" if status >= 500 else "4xx"


def _bucket(value: float, edges: tuple[float, ...]) -> int:
    return sum(value >= e for e in edges)


def keys(failure: FailureContext) -> list[tuple[Any, ...]]:
    """The failure's cells, finest first: each drops the least telling feature."""
    # `Retry-After: 0` asks for no wait: the same as no header.
    cls = (failure_class(failure), bool(failure.retry_after_s))
    elapsed = _bucket(failure.elapsed_s, (2.0, 8.0, 30.0, 120.0, 600.0))
    error = _bucket(failure.host_error_rate, (0.2, 0.45, 0.7, 0.9))
    latency = _bucket(failure.host_latency_ms, (250.0, 1000.0, 4000.0))
    attempt = min(failure.attempt, 4)
    return [
        (*cls, elapsed, error, latency, attempt),
        (*cls, elapsed, error, latency),
        (*cls, elapsed, error),
        (*cls, elapsed),
        cls,
        cls[:1],  # a status seen in training, with an unseen Retry-After habit
        (),
    ]


@dataclass
class LearnedRetry:
    """P(a call succeeds `anchor + GRID[i]` seconds from now | the failure's cell), learned from
    traces. A retry goes at the delay d minimising `d / deadline + (1 - p(d)) * miss_cost` (time
    spent against the chance of one more failed call), or the step gives up when even the best
    chance within the deadline, over the attempts left, is below `give_up_below`."""

    table: dict[tuple[Any, ...], np.ndarray]
    counts: dict[tuple[Any, ...], float]
    miss_cost: float = 0.2
    give_up_below: float = 0.05
    params: dict[str, Any] = field(default_factory=dict)

    def success_curve(self, failure: FailureContext) -> tuple[np.ndarray, tuple[Any, ...]]:
        """The success chance at each grid delay, from the finest cell with enough samples."""
        for key in keys(failure):
            if self.counts.get(key, 0.0) >= MIN_CELL:
                return self.table[key], key
        return np.full(len(GRID), 0.5), ()

    def decide(self, failure: FailureContext) -> RetryDecision:
        """Retry at the delay the success curve recommends, or give up when it is hopeless."""
        if not transient(failure):
            return RetryDecision(False, 0.0, "permanent error")
        curve, _key = self.success_curve(failure)
        anchor = failure.retry_after_s or 0.0
        delays = anchor + GRID
        feasible = delays < min(failure.remaining_s - 0.5, failure.max_interval_s + 1e-9)
        if not feasible.any():
            return RetryDecision(
                False, 0.0, f"no retry fits: the wait ({delays[0]:.1f} s) passes the deadline"
            )
        best = float(np.where(feasible, curve, 0.0).max())
        left = max(failure.attempts_left, 1)
        overall = 1.0 - (1.0 - best) ** left
        if overall < self.give_up_below:
            return RetryDecision(
                False, 0.0, f"unlikely to recover in time (p={overall:.2f} within the deadline)"
            )
        budget = failure.elapsed_s + min(failure.remaining_s, 3600.0)
        # A failed last attempt ends the step: missing then costs a whole give-up.
        miss = self.miss_cost if left > 1 else 1.0 + self.miss_cost
        scores = np.where(feasible, delays / budget + (1.0 - curve) * miss, np.inf)
        index = int(np.argmin(scores))
        return RetryDecision(
            True,
            float(delays[index]),
            f"p(success)={curve[index]:.2f} after {delays[index]:.1f} s",
        )

    def fresh(self) -> LearnedRetry:
        """Itself: the model keeps no state between decisions."""
        return self
