"""Pacing a paginated REST collect with the connection model's plan and the adaptive limiter.

The first pages are the probe: they go out as they always did, one after another, and their
latency, 429s, errors, `Retry-After` and advertised `RateLimit-Policy` are measured. The
`connection_optimization` decider (the registry's champion, or the spec's fixed settings as its
baseline) turns them into a plan; from then on every request waits for the `Pacer` (rate and
concurrency, AIMD on 429s and slow answers) seeded and bounded by that plan. The plan, where the
limiter ended and who decided go into the collect's output.

A page walk is sequential (each next page comes from the previous answer), so the collector
bounds concurrency at one and the plan's rate is what paces it. A declared `rate_limit` stays a
hard ceiling (it is the plan's upper bound, and its own limiter still runs).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import asdict
from typing import Any

import httpx

from agents.base.context import ActionContext
from ml.connection_optimization.limiter import Pacer
from ml.connection_optimization.model import FixedPlanner
from ml.connection_optimization.plan import Bounds, ConnectionPlan, ProbeRecorder, clamp_plan
from ml.slot import Decider

MODEL = "connection_optimization"
BASELINE = FixedPlanner()
MAX_WAIT_S = 60.0  # a pacing wait never exceeds this (a longer Retry-After ends the attempts)
_POLICY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*;\s*w\s*=\s*(\d+(?:\.\d+)?)")


def rate_hint(headers: httpx.Headers) -> float | None:
    """Requests per second a `RateLimit-Policy: <quota>;w=<seconds>` header advertises."""
    found = _POLICY.match(headers.get("ratelimit-policy", ""))
    if not found or float(found.group(2)) <= 0:
        return None
    return float(found.group(1)) / float(found.group(2))


def retry_after(headers: httpx.Headers) -> float | None:
    """A delta-seconds `Retry-After` (an HTTP date is left to the retry policy)."""
    value = headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


class CollectPacing:
    """Probe, plan and pace the requests of one collect; `report()` for its output."""

    def __init__(self, decider: Decider, bounds: Bounds, *, page_param: str | None) -> None:
        self.decider = decider
        self.bounds = bounds
        self.page_param = page_param
        self.probe = ProbeRecorder(getattr(decider.predictor, "probe_requests", 0))
        self.pacer: Pacer | None = None
        self.in_flight = 0
        self.latencies: list[float] = []
        self.waited_s = 0.0
        if self.probe.done:
            self._plan()

    def _plan(self) -> None:
        stats = self.probe.stats()
        plan: ConnectionPlan = self.decider.predictor.plan(stats, self.bounds)
        self.pacer = Pacer(clamp_plan(plan, self.bounds))

    async def acquire(self) -> float:
        """Wait until the plan lets the next request go; the send time to hand back."""
        while self.pacer is not None:
            delay = self.pacer.delay(time.monotonic(), self.in_flight)
            if delay is not None and delay <= 0:
                break
            wait = 0.01 if delay is None else min(delay, MAX_WAIT_S)
            self.waited_s += wait
            await asyncio.sleep(wait)
        now = time.monotonic()
        self.in_flight += 1
        if self.pacer is None:
            self.probe.sent(now)
        else:
            self.pacer.sent(now)
        return now

    def page_params(self) -> dict[str, Any]:
        """The plan's page size, where the walk lets it change (offset and cursor styles)."""
        if self.pacer is None or not self.pacer.plan.adaptive or not self.page_param:
            return {}
        return {self.page_param: self.pacer.plan.page_size}

    def answered(self, sent: float, status: int, headers: httpx.Headers | None = None) -> None:
        """One answer's status and headers (status 0: the connection failed)."""
        now = time.monotonic()
        self.in_flight = max(0, self.in_flight - 1)
        latency = now - sent
        self.latencies.append(latency)
        wait = retry_after(headers) if headers is not None else None
        if self.pacer is None:
            hint = rate_hint(headers) if headers is not None else None
            self.probe.answered(
                now,
                status=status,
                latency_s=latency,
                records=0,
                retry_after_s=wait,
                rate_hint_per_s=hint,
            )
            if self.probe.done:
                self._plan()
            return
        self.pacer.answered(
            now, status=status, latency_s=latency, retry_after_s=wait, in_flight=self.in_flight
        )

    def report(self) -> dict[str, Any]:
        """The plan, the probe, where the limiter ended and who decided."""
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None
        return {
            "decider": self.decider.provenance(),
            "plan": self.pacer.plan.to_dict() if self.pacer else None,
            "probe": asdict(self.probe.stats()),
            "limiter": self.pacer.report() if self.pacer else None,
            "latency_p99_s": None if p99 is None else round(p99, 4),
            "waited_s": round(self.waited_s, 3),
        }


def for_collect(
    ctx: ActionContext,
    *,
    page_size: int | None,
    size_param: str | None,
    pagination_type: str,
    rate_limit_per_s: float | None,
) -> CollectPacing:
    """The pacing of one REST collect, decided by the agent's connection model slot."""
    slot = ctx.models.get(MODEL)
    decider = slot.current if slot is not None else Decider(BASELINE, MODEL, None, "baseline")
    # Changing the page size mid-walk is safe where the position is an offset or a token;
    # a page number would shift, and a user's own page_size is kept as given.
    resizable = (
        size_param if page_size is None and pagination_type in ("offset", "cursor") else None
    )
    bounds = Bounds(
        min_concurrency=1,
        max_concurrency=1,
        default_page_size=page_size or 100,
        max_page_size=1000 if resizable else page_size or 100,
        max_rate_per_s=rate_limit_per_s,
    )
    return CollectPacing(decider, bounds, page_param=resizable)
