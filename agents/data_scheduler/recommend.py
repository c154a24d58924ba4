"""How often to poll a source, from the history of past polls (a change-rate estimate).

Changes are modelled as a Poisson process with rate λ. A poll only tells whether at least one
change happened since the previous poll, so an interval of length Δ shows a change with
probability 1 - exp(-λΔ). λ is the maximum-likelihood estimate over all intervals, which
handles irregular polling (Cho & Garcia-Molina, "Estimating frequency of change", 2003); when
every poll saw a change the MLE is unbounded and their bias-reduced estimator is used instead.
The recommended interval is the mean time between changes, rounded down to a cron-friendly step
and kept within the caller's bounds.

`next_interval` is the adaptive schedules' decision: the scheduling-intelligence model (or its
baseline) picks the wait after the newest collect from rows per collect.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ml.scheduling_intelligence.policy import (
    Bounds,
    ChoGarciaMolina,
    IntervalDecision,
    Observation,
)

# The baseline the agent serves without a champion: the stronger of the two baselines on the
# held-out scenarios (see ml/README.md), with the rate limits `make models` picked for it.
BASELINE = ChoGarciaMolina(floor=0.5, ceiling=16.0)
MODEL = "scheduling_intelligence"

# Steps a cron expression can express evenly: divisors of an hour, of a day, a day, a week.
NICE_STEPS_S = (
    [60 * m for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)]
    + [3600 * h for h in (1, 2, 3, 4, 6, 8, 12)]
    + [86400, 7 * 86400]
)


@dataclass(frozen=True)
class Poll:
    at: datetime
    changed: bool


@dataclass(frozen=True)
class Estimate:
    rate_per_s: float
    method: str
    standard_error_per_s: float | None


def _mle(changed: list[float], unchanged: list[float]) -> float:
    """Solve sum_changed Δ/(exp(λΔ)-1) = sum_unchanged Δ for λ (bisection in log space)."""
    total_unchanged = sum(unchanged)

    def excess(rate: float) -> float:
        return sum(d / math.expm1(rate * d) for d in changed) - total_unchanged

    low, high = 1e-12, 1e3
    for _ in range(200):
        mid = math.sqrt(low * high)
        if excess(mid) > 0:
            low = mid
        else:
            high = mid
        if high / low < 1 + 1e-9:
            break
    return math.sqrt(low * high)


def _fisher_se(rate: float, changed: list[float]) -> float | None:
    information = sum(d * d * math.exp(-rate * d) / (-math.expm1(-rate * d)) ** 2 for d in changed)
    return 1 / math.sqrt(information) if information > 0 else None


def estimate(polls: list[Poll]) -> tuple[Estimate, list[float], list[float]]:
    """The change rate from polls sorted by time; also the changed and unchanged intervals."""
    changed: list[float] = []
    unchanged: list[float] = []
    for previous, current in zip(polls, polls[1:], strict=False):
        gap = (current.at - previous.at).total_seconds()
        if gap <= 0:
            continue
        (changed if current.changed else unchanged).append(gap)
    intervals = len(changed) + len(unchanged)
    span = sum(changed) + sum(unchanged)
    if not changed:
        # No change seen: the rule of three bounds the rate (95 %) by 3 / observed time.
        return Estimate(3 / span, "upper bound (no change observed)", None), changed, unchanged
    if not unchanged:
        mean = span / intervals
        rate = -math.log(0.5 / (intervals + 0.5)) / mean
        return Estimate(rate, "bias-reduced estimator (every poll saw a change)", None), changed, []
    rate = _mle(changed, unchanged)
    return (
        Estimate(rate, "maximum likelihood (Poisson)", _fisher_se(rate, changed)),
        changed,
        (unchanged),
    )


def nice_interval(seconds: float, minimum: float, maximum: float) -> int:
    """The largest cron-friendly step not above `seconds`, within [minimum, maximum]."""
    bounded = min(max(seconds, minimum), maximum)
    fitting = [s for s in NICE_STEPS_S if s <= bounded and s >= minimum]
    if fitting:
        return fitting[-1]
    above = [s for s in NICE_STEPS_S if s >= minimum]
    return above[0] if above else NICE_STEPS_S[-1]


def cron_for(interval_s: int) -> str:
    """A cron expression firing every `interval_s` seconds (a value from NICE_STEPS_S)."""
    if interval_s < 3600:
        minutes = interval_s // 60
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if interval_s < 86400:
        hours = interval_s // 3600
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if interval_s < 7 * 86400:
        return "0 0 * * *"
    return "0 0 * * 1"


def changes_by_hour(polls: list[Poll], tz: ZoneInfo) -> dict[str, int]:
    """How many polls saw a change, per local hour of day (evidence of a daily rhythm)."""
    hours = Counter(p.at.astimezone(tz).hour for p in polls[1:] if p.changed)
    return {f"{h:02d}": hours[h] for h in sorted(hours)}


def collect_observations(
    history: list[tuple[datetime, int | None, float | None]],
) -> list[Observation]:
    """Collects as (time, rows, cursor), oldest first; rows from the cursor's advance if absent.

    A collect reporting neither rows nor a numeric cursor is left out: it says nothing about
    how much changed.
    """
    out: list[Observation] = []
    previous_cursor: float | None = None
    for at, rows, cursor in sorted(history, key=lambda h: h[0]):
        if rows is None and cursor is not None and previous_cursor is not None:
            rows = max(int(cursor - previous_cursor), 0)
        if cursor is not None:
            previous_cursor = cursor
        if rows is not None:
            out.append(Observation(at=at.timestamp(), rows=rows))
    return out


def next_interval(predictor: Any, history: list[Observation], bounds: Bounds) -> IntervalDecision:
    """The decider's interval after the newest collect (any predictor of the same interface)."""
    decision: IntervalDecision = predictor.next_interval(history, bounds)
    return decision
