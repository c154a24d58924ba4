"""Seeded flaky HTTP sources, in simulated seconds: what a call at time t gets back.

An episode starts with a failed call at t=0 and says, for any later instant, how likely a call
is to succeed and what a failed one answers (status, error class, Retry-After, latency). The
host's recent error rate and latency (what the other steps calling it saw) come with it, noisy
and overlapping between families, as they are in life. Families:
- `blip`: a few seconds of 502/503/connection resets;
- `intermittent`: for a while, each call fails at random (503/502/resets), then none do;
- `rate_limit`: 429 with an honest `Retry-After` (the window's remaining seconds);
- `rate_limit_no_ra`: 429 without `Retry-After`;
- `outage`: 500/502/503 for seconds to minutes;
- `long_outage`: refused connections or 503 for minutes to hours (mostly past any deadline);
- `degradation`: slow recovery: timeouts and 504s, the success chance rising over minutes;
- `permanent`: 400/401/403/404, never better;
held out of training (evaluation only):
- `flapping`: every call fails independently with a fixed probability (500/502);
- `brownout`: 503 with a `Retry-After` that under-states the recovery.
Nothing sleeps: a retry policy is run against an episode with `run_episode` in simulated time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TRAIN_FAMILIES = (
    "blip",
    "intermittent",
    "rate_limit",
    "rate_limit_no_ra",
    "outage",
    "long_outage",
    "degradation",
    "permanent",
)
HELD_OUT_FAMILIES = ("flapping", "brownout")
FAMILIES = TRAIN_FAMILIES + HELD_OUT_FAMILIES
HELD_OUT_SEED = 1_000_000  # evaluation seeds start here; training seeds stay below


@dataclass(frozen=True)
class Limits:
    """The step's hard limits (the spec's RetryPolicy and deadline); every policy obeys them."""

    max_attempts: int
    max_interval_s: float
    deadline_s: float


@dataclass(frozen=True)
class Response:
    ok: bool
    status: int | None  # None for a transport failure
    error_class: str  # "ok", "http", "timeout", "connect"
    retry_after_s: float | None
    latency_s: float


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


@dataclass(frozen=True)
class Episode:
    """One failure episode of one source, fully determined by (family, seed)."""

    family: str
    seed: int
    limits: Limits
    recover_at: float  # when calls start succeeding (inf: never)
    ramp_s: float  # degradation: seconds over which the success chance rises to 1
    flap_p: float  # flapping: each call's failure probability
    statuses: tuple[int | None, ...]  # what a failed call answers (None: connection error)
    retry_after: bool
    timeout_s: float  # latency of a timed-out call
    host_error_rate: float
    host_latency_ms: float

    def success_probability(self, t: float) -> float:
        """The chance that a call started at `t` succeeds."""
        if self.family == "flapping":
            return 1.0 - self.flap_p
        if self.family == "intermittent":
            return 1.0 if t >= self.recover_at else 1.0 - self.flap_p
        if self.family == "degradation":
            if t >= self.recover_at:
                return 1.0
            start = self.recover_at - self.ramp_s
            return max(0.0, (t - start) / self.ramp_s) if t > start else 0.0
        return 1.0 if t >= self.recover_at else 0.0

    def respond(self, t: float, rng: random.Random) -> Response:
        """What a call started at `t` gets back (random draws from the run's own `rng`)."""
        p = self.success_probability(t)
        if p >= 1.0 or (p > 0.0 and rng.random() < p):
            return Response(True, 200, "ok", None, max(0.02, rng.gauss(0.15, 0.05)))
        status = rng.choice(self.statuses)
        if status is None:
            return Response(False, None, "connect", None, max(0.005, rng.gauss(0.02, 0.01)))
        if status == 504 and self.family == "degradation" and rng.random() < 0.5:
            return Response(False, None, "timeout", None, self.timeout_s)
        retry_after = None
        if self.retry_after:
            # An integer number of seconds, as the header carries it.
            retry_after = float(max(1, math.ceil(self.hinted_recovery() - t)))
        return Response(False, status, "http", retry_after, max(0.01, rng.gauss(0.08, 0.03)))

    def hinted_recovery(self) -> float:
        """The instant the source's Retry-After points at (brownouts under-state it)."""
        if self.family == "brownout":
            return self.recover_at / self._brownout_understatement
        return self.recover_at

    @property
    def _brownout_understatement(self) -> float:
        return 1.0 + (self.seed % 7) / 10.0  # 1.0 .. 1.6, fixed per episode

    def recoverable(self) -> bool:
        """Whether a clairvoyant policy within the limits would most likely succeed."""
        last = self.limits.deadline_s - 1.0
        if last <= 0:
            return False
        p = self.success_probability(last)
        return 1.0 - (1.0 - p) ** max(self.limits.max_attempts - 1, 0) >= 0.5


def episode(family: str, seed: int) -> Episode:
    """The episode of `family` drawn from `seed` (same seed, same episode)."""
    rng = random.Random(f"{family}:{seed}")
    limits = Limits(
        max_attempts=rng.choice((3, 4, 5, 6, 8)),
        max_interval_s=rng.choice((30.0, 60.0, 120.0)),
        deadline_s=_log_uniform(rng, 20.0, 900.0),
    )
    recover_at, ramp, flap, retry_after, timeout = 0.0, 1.0, 0.0, False, 10.0
    err, lat = rng.uniform(0.0, 0.3), _log_uniform(rng, 40, 400)
    statuses: tuple[int | None, ...]
    if family == "blip":
        recover_at, statuses = _log_uniform(rng, 0.2, 4.0), (502, 503, None)
    elif family == "intermittent":
        recover_at, statuses = _log_uniform(rng, 10.0, 600.0), (502, 503, None)
        flap = rng.uniform(0.2, 0.7)
        err = min(1.0, max(0.0, flap + rng.gauss(0, 0.15)))
    elif family == "rate_limit":
        recover_at, statuses, retry_after = _log_uniform(rng, 2.0, 300.0), (429,), True
        err = rng.uniform(0.1, 0.6)
    elif family == "rate_limit_no_ra":
        recover_at, statuses = _log_uniform(rng, 1.0, 90.0), (429,)
        err = rng.uniform(0.1, 0.6)
    elif family == "outage":
        recover_at, statuses = _log_uniform(rng, 5.0, 240.0), (500, 502, 503)
        err = rng.uniform(0.4, 1.0)
    elif family == "long_outage":
        recover_at, statuses = _log_uniform(rng, 300.0, 14400.0), (503, None)
        err = rng.uniform(0.6, 1.0)
    elif family == "degradation":
        recover_at = _log_uniform(rng, 20.0, 600.0)
        ramp = recover_at * rng.uniform(0.3, 0.9)
        statuses, timeout = (504, 503), rng.uniform(2.0, 15.0)
        err, lat = rng.uniform(0.3, 0.8), _log_uniform(rng, 1500, 10000)
    elif family == "permanent":
        recover_at, statuses = math.inf, (rng.choice((400, 401, 403, 404)),)
    elif family == "flapping":
        flap = rng.uniform(0.3, 0.8)
        statuses, err = (500, 502), min(1.0, max(0.0, flap + rng.gauss(0, 0.1)))
    elif family == "brownout":
        recover_at, statuses, retry_after = _log_uniform(rng, 5.0, 300.0), (503,), True
        err = rng.uniform(0.4, 0.9)
    else:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    return Episode(
        family, seed, limits, recover_at, ramp, flap, statuses, retry_after, timeout, err, lat
    )


@dataclass(frozen=True)
class Call:
    """One call of a run: when, what came back, and the decision taken after it."""

    at: float
    ok: bool
    status: int | None
    error_class: str
    retry: bool | None = None
    delay_s: float | None = None


@dataclass(frozen=True)
class Outcome:
    """How a policy fared on one episode."""

    family: str
    seed: int
    success: bool
    time_s: float  # until success or giving up
    calls: int
    wasted_calls: int  # failed retries (the first failure is not the policy's doing)
    load_calls: int  # retries that hit the source while it was down (success chance < 0.5)
    gave_up_recoverable: bool
    deadline_s: float
    trace: tuple[Call, ...]

    def cost(self) -> float:
        """The episode's cost (see `retry_strategy.evaluate.COST`): lower is better."""
        return (
            min(self.time_s / self.deadline_s, 1.0)
            + 0.1 * self.wasted_calls
            + 1.0 * self.gave_up_recoverable
        )


# A decide function: (the failure's features as a dict) -> (retry, delay_s), after clamping.
Decide = Callable[[dict[str, Any]], tuple[bool, float]]


def run_episode(ep: Episode, decide: Decide, *, attempt_floor: int = 1) -> Outcome:
    """Run a retry policy against `ep` in simulated time; every call and decision recorded."""
    rng = random.Random(f"run:{ep.family}:{ep.seed}")
    t, attempt, calls, wasted, load = 0.0, attempt_floor, 0, 0, 0
    trace: list[Call] = []
    limits = ep.limits
    while True:
        down = ep.success_probability(t) < 0.5
        response = ep.respond(t, rng)
        calls += 1
        end = t + response.latency_s
        if response.ok:
            trace.append(Call(t, True, response.status, response.error_class))
            return _outcome(ep, True, end, calls, wasted, load, trace)
        if calls > 1:
            wasted += 1
            load += down
        retry, delay = False, 0.0
        if attempt < limits.max_attempts and end < limits.deadline_s:
            features = {
                "status": response.status,
                "error_class": response.error_class,
                "retry_after_s": response.retry_after_s,
                "attempt": attempt,
                "elapsed_s": end,
                "host_error_rate": ep.host_error_rate,
                "host_latency_ms": ep.host_latency_ms,
                "remaining_s": limits.deadline_s - end,
                "attempts_left": limits.max_attempts - attempt,
                "max_interval_s": limits.max_interval_s,
            }
            retry, delay = decide(features)
        trace.append(Call(t, False, response.status, response.error_class, retry, delay))
        if not retry:
            return _outcome(ep, False, end, calls, wasted, load, trace)
        t, attempt = end + delay, attempt + 1


def _outcome(
    ep: Episode, success: bool, end: float, calls: int, wasted: int, load: int, trace: list[Call]
) -> Outcome:
    missed = not success and ep.recoverable()
    return Outcome(
        ep.family,
        ep.seed,
        success,
        end,
        calls,
        wasted,
        load,
        missed,
        ep.limits.deadline_s,
        tuple(trace),
    )


def episodes(families: tuple[str, ...], seeds: range) -> list[Episode]:
    """One episode per (family, seed)."""
    return [episode(family, seed) for family in families for seed in seeds]
