"""What the connection model reads and decides: probe statistics in, a connection plan out.

The same types serve the simulator, training and the collector, so a plan chosen in the
simulator and one chosen for a live API are computed from the same measurements.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

PROBE_REQUESTS = 4  # the first requests of a collect, sent one at a time at full speed
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class ProbeStats:
    """What the first few requests to a source measured."""

    requests: int = 0
    ok: int = 0
    rejected: int = 0  # 429s (and overload 503s)
    errors: int = 0  # other 5xx and connection failures
    latency_p50_s: float | None = None  # of successful requests
    latency_max_s: float | None = None
    records_per_page: float | None = None
    elapsed_s: float = 0.0  # first send to last answer, waits included
    retry_after_s: float | None = None  # the largest Retry-After seen
    rate_hint_per_s: float | None = None  # an advertised RateLimit-Policy, per second

    @property
    def ok_rate_per_s(self) -> float | None:
        """Successful requests per second over the probe, waits included."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 and self.ok else None

    def features(self) -> list[float]:
        """The model's input vector (logs where scales span orders of magnitude).

        Records per page is left out: the collector cannot count them before it parses a
        page, and the simulator's figure would then mean something the live one does not.
        """
        n = max(self.requests, 1)
        p50 = self.latency_p50_s or 1.0
        spread = (self.latency_max_s or p50) / p50
        ok_rate = self.ok_rate_per_s or 0.0
        return [
            math.log(p50),
            math.log(max(spread, 1.0)),
            self.rejected / n,
            self.errors / n,
            1.0 if self.retry_after_s is not None else 0.0,
            math.log1p(ok_rate),
            math.log1p(self.rate_hint_per_s or 0.0),
        ]


@dataclass(frozen=True)
class Bounds:
    """Hard limits the spec (or the caller) sets; a plan never leaves them."""

    min_concurrency: int = 1
    max_concurrency: int = 64
    default_page_size: int = DEFAULT_PAGE_SIZE
    max_page_size: int = 1000
    max_rate_per_s: float | None = None  # a declared rate_limit, never exceeded


@dataclass(frozen=True)
class ConnectionPlan:
    """Starting concurrency, page size and rate, and the range the limiter may move in."""

    concurrency: int
    page_size: int
    rate_per_s: float | None  # None: no pacing until the source pushes back
    adaptive: bool = True  # False: hold these settings (the spec's fixed behaviour)
    min_concurrency: int = 1
    max_concurrency: int = 200
    min_rate_per_s: float = 0.2
    max_rate_per_s: float | None = None
    backoff: float = 0.9
    decider: str = "model"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a step's output."""
        return asdict(self)


def clamp_plan(plan: ConnectionPlan, bounds: Bounds) -> ConnectionPlan:
    """`plan` with every figure inside `bounds` (the spec's limits always win)."""
    lo, hi = bounds.min_concurrency, max(bounds.min_concurrency, bounds.max_concurrency)
    top_rate = bounds.max_rate_per_s
    rate = plan.rate_per_s
    if top_rate is not None:
        rate = top_rate if rate is None else min(rate, top_rate)
    max_rate = plan.max_rate_per_s
    if top_rate is not None:
        max_rate = top_rate if max_rate is None else min(max_rate, top_rate)
    return ConnectionPlan(
        concurrency=min(hi, max(lo, plan.concurrency)),
        page_size=min(bounds.max_page_size, max(1, plan.page_size)),
        rate_per_s=rate,
        adaptive=plan.adaptive,
        min_concurrency=min(hi, max(lo, plan.min_concurrency)),
        max_concurrency=min(hi, max(lo, plan.max_concurrency)),
        min_rate_per_s=min(plan.min_rate_per_s, top_rate or plan.min_rate_per_s),
        max_rate_per_s=max_rate,
        backoff=plan.backoff,
        decider=plan.decider,
        detail=plan.detail,
    )


class ProbeRecorder:
    """Accumulates the probe requests' answers into `ProbeStats`."""

    def __init__(self, wanted: int = PROBE_REQUESTS) -> None:
        self.wanted = wanted
        self.started: float | None = None
        self.last: float = 0.0
        self.latencies: list[float] = []
        self.records: list[int] = []
        self.requests = self.rejected = self.errors = 0
        self.retry_after: float | None = None
        self.hint: float | None = None

    @property
    def done(self) -> bool:
        """Whether enough answers arrived to plan from."""
        return self.requests >= self.wanted

    def sent(self, now: float) -> None:
        """A probe request left at `now`."""
        if self.started is None:
            self.started = now

    def answered(
        self,
        now: float,
        *,
        status: int,
        latency_s: float,
        records: int,
        retry_after_s: float | None,
        rate_hint_per_s: float | None,
    ) -> None:
        """One answer (status 0: the connection failed)."""
        self.requests += 1
        self.last = now
        if status == 200 or 200 <= status < 400:
            self.latencies.append(latency_s)
            self.records.append(records)
        elif status in (429, 503):  # the source pushing back
            self.rejected += 1
        else:
            self.errors += 1
        if retry_after_s is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after_s)
        if rate_hint_per_s is not None:
            self.hint = rate_hint_per_s

    def stats(self) -> ProbeStats:
        """What the probe measured so far."""
        return ProbeStats(
            requests=self.requests,
            ok=len(self.latencies),
            rejected=self.rejected,
            errors=self.errors,
            latency_p50_s=statistics.median(self.latencies) if self.latencies else None,
            latency_max_s=max(self.latencies) if self.latencies else None,
            records_per_page=statistics.fmean(self.records) if self.records else None,
            elapsed_s=max(0.0, self.last - (self.started or 0.0)),
            retry_after_s=self.retry_after,
            rate_hint_per_s=self.hint,
        )
