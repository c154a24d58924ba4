"""The adaptive limiter a connection plan seeds and bounds: AIMD on concurrency and on rate.

The concurrency part follows Netflix concurrency-limits' `AIMDLimit`: a drop (429, overload
503, or a latency past the tolerance) multiplies the limit by `backoff`; a success while at
least half the limit is in use adds one. Requests that run one after another (a paginated walk)
cannot go below one in flight, so a second AIMD loop governs the request rate: the first
refusal caps it under the rate of successes before it, each further refusal cuts it (once
per round of requests), and each success raises it a little, never past the plan's bounds.
A `Retry-After` pauses every send until it passes. No library here does both (aiolimiter is a
fixed leaky bucket), and the logic must run in simulated time too, so it takes `now` as an
argument and never sleeps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ml.connection_optimization.plan import ConnectionPlan

# Netflix's AIMDLimit defaults (initial 20, max 200, backoff 0.9), with the floor at one
# request: an HTTP source may only take one at a time.
UNSEEDED = ConnectionPlan(
    concurrency=20,
    page_size=100,
    rate_per_s=None,
    adaptive=True,
    min_concurrency=1,
    max_concurrency=200,
    decider="adaptive limiter alone",
)
RATE_CUT = 0.7  # on a refusal: the new rate as a share of the current one
RATE_GAIN = 0.02  # per success: the rate grows by this share (at least 0.05 req/s)
LATENCY_TOLERANCE = 4.0  # a success this many times slower than the fastest seen counts as a drop


@dataclass
class AimdLimit:
    """Netflix's AIMD concurrency limit, with the floor and ceiling a plan gives it."""

    limit: float
    min_limit: int = 1
    max_limit: int = 200
    backoff: float = 0.9

    def on_sample(self, *, in_flight: int, dropped: bool) -> None:
        """One request finished: back off on a drop, grow by one when the limit is in use."""
        if dropped:
            self.limit = max(float(self.min_limit), self.limit * self.backoff)
        elif in_flight * 2 >= self.limit:
            self.limit = min(float(self.max_limit), self.limit + 1.0)

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now."""
        return max(self.min_limit, int(self.limit))


class Pacer:
    """Concurrency limit, request rate and pauses for one source, from a plan."""

    def __init__(self, plan: ConnectionPlan) -> None:
        self.plan = plan
        self.limit = AimdLimit(
            float(plan.concurrency), plan.min_concurrency, plan.max_concurrency, plan.backoff
        )
        self.rate: float | None = plan.rate_per_s
        self.next_send = 0.0
        self.pause_until = 0.0
        self.last_cut = float("-inf")
        self.fastest: float | None = None
        self.oks: deque[float] = deque(maxlen=16)
        self.rejected = self.errors = self.ok = 0
        self.peak_limit = self.limit.allowed

    def delay(self, now: float, in_flight: int) -> float | None:
        """Seconds before the next request may leave; None while the limit is full."""
        limit = self.limit.allowed if self.plan.adaptive else self.plan.concurrency
        if in_flight >= limit:
            return None
        return max(0.0, self.pause_until - now, self.next_send - now)

    def sent(self, now: float) -> None:
        """A request left at `now`: the next one waits one rate interval."""
        if self.rate:
            self.next_send = max(self.next_send, now) + 1.0 / self.rate

    def achieved_rate(self) -> float | None:
        """Successful requests per second lately: what the source admitted, not what was sent
        (a burst of sends says nothing about the rate it allows)."""
        if len(self.oks) < 2 or self.oks[-1] <= self.oks[0]:
            return None
        return (len(self.oks) - 1) / (self.oks[-1] - self.oks[0])

    def answered(
        self,
        now: float,
        *,
        status: int,
        latency_s: float,
        retry_after_s: float | None,
        in_flight: int,
    ) -> None:
        """Adapt to one answer (status 0: the connection failed)."""
        pushed_back = status in (429, 503)
        if pushed_back:
            self.rejected += 1
        elif status >= 500 or status == 0:
            self.errors += 1
        else:
            self.ok += 1
            self.oks.append(now)
        if retry_after_s is not None and pushed_back:
            self.pause_until = max(self.pause_until, now + retry_after_s)
        if not self.plan.adaptive:
            return
        slow = False
        if not pushed_back and status < 400:
            self.fastest = latency_s if self.fastest is None else min(self.fastest, latency_s)
            slow = latency_s > LATENCY_TOLERANCE * self.fastest
        self.limit.on_sample(in_flight=in_flight, dropped=pushed_back or slow)
        self.peak_limit = max(self.peak_limit, self.limit.allowed)
        if pushed_back and now - latency_s >= self.last_cut:
            # One cut per round, as TCP does: refusals of requests sent before the last cut
            # report the old rate, not the new one.
            self._cut_rate()
            self.last_cut = now
        elif self.rate is not None and status < 400:
            top = self.plan.max_rate_per_s
            grown = self.rate + max(0.05, RATE_GAIN * self.rate)
            self.rate = grown if top is None else min(top, grown)

    def _cut_rate(self) -> None:
        current = self.rate if self.rate is not None else self.achieved_rate()
        if current is None:
            return
        self.rate = max(self.plan.min_rate_per_s, current * RATE_CUT)

    def report(self) -> dict[str, Any]:
        """Where the limiter ended, for a step's output."""
        return {
            "limit": self.limit.allowed,
            "peak_limit": self.peak_limit,
            "rate_per_s": None if self.rate is None else round(self.rate, 3),
            "ok": self.ok,
            "rejected": self.rejected,
            "errors": self.errors,
        }
