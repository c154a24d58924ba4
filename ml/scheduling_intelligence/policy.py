"""Interval policies: a fixed interval, the Cho & Garcia-Molina estimator, the learned model.

Every policy answers `next_interval(history, bounds)` the same way, so the agent never branches
on which one it holds. A history is the source's past collects (time, rows new since the
previous collect). All three spend the same budget on average: `bounds.budget_s` is the mean
interval the schedule can afford, and the adaptive ones move runs from quiet spells to busy
ones. With per-row staleness (how long each new row waits to be collected) the best split of a
fixed number of runs over spells of rate λ polls at a frequency proportional to √λ (a change in
an interval of length Δ waits Δ/2 on average, so a spell costs λΔ/2 per unit time; minimising
∫λ/f subject to ∫f = budget gives f ∝ √λ). The policies differ in how they estimate λ next.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DAY_S = 86400.0
HISTORY_LIMIT = 400  # observations a decision looks at (7 days of hourly polls, and more)
MIN_HISTORY = 4  # fewer observations than this: poll at the budget interval
RATIO_LIMITS = (1e-3, 1e3)  # how far the predicted rate may stray from the long-run rate


@dataclass(frozen=True)
class Observation:
    """One collect: when it ran and how many rows it found new since the previous one."""

    at: float  # epoch seconds
    rows: int


@dataclass(frozen=True)
class Bounds:
    """What the schedule allows: an interval within [min, max], averaging about `budget`."""

    min_interval_s: float
    max_interval_s: float
    budget_interval_s: float | None = None  # None: the geometric midpoint of min and max

    @property
    def budget_s(self) -> float:
        """The mean interval the run budget allows."""
        if self.budget_interval_s is not None:
            return min(max(self.budget_interval_s, self.min_interval_s), self.max_interval_s)
        return math.sqrt(self.min_interval_s * self.max_interval_s)

    def clamp(self, seconds: float) -> float:
        """`seconds` kept within [min, max]."""
        return min(max(seconds, self.min_interval_s), self.max_interval_s)


@dataclass(frozen=True)
class IntervalDecision:
    interval_s: float
    reason: str


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _columns(history: Sequence[Observation]) -> tuple[list[float], list[int]]:
    tail = history[-HISTORY_LIMIT:]
    return [o.at for o in tail], [o.rows for o in tail]


def long_run_rate(at: Sequence[float], rows: Sequence[int]) -> float:
    """Rows per second over the history (the first collect's rows predate it: left out)."""
    span = at[-1] - at[0]
    return (sum(rows) - rows[0] + 0.5) / span if span > 0 else 0.0


class _RatePolicy:
    """Poll at frequency ∝ √(predicted rate / long-run rate), around the budget interval."""

    name = "rate policy"
    # How far the predicted rate may stray from the long-run rate: a long pause risks a burst
    # that begins just after a collect and waits the whole pause (chosen on training traces).
    floor = RATIO_LIMITS[0]
    ceiling = RATIO_LIMITS[1]

    def ratio(self, at: Sequence[float], rows: Sequence[int], budget: float) -> tuple[float, str]:
        """Predicted rate over the next budget interval relative to the long-run rate; why."""
        raise NotImplementedError

    def decide(self, at: Sequence[float], rows: Sequence[int], bounds: Bounds) -> IntervalDecision:
        """The decision from the history's columns (times ascending)."""
        budget = bounds.budget_s
        if len(at) < MIN_HISTORY or at[-1] <= at[0]:
            return IntervalDecision(
                bounds.clamp(budget), f"{len(at)} collects: too little history, budget interval"
            )
        ratio, why = self.ratio(at, rows, budget)
        ratio = min(max(ratio, self.floor), self.ceiling)
        interval = bounds.clamp(budget / math.sqrt(ratio))
        return IntervalDecision(
            interval,
            f"{self.name}: {why}; next rate {ratio:.2f}x the long-run rate, so "
            f"{_duration(interval)} (budget {_duration(budget)}, "
            f"bounds {_duration(bounds.min_interval_s)}-{_duration(bounds.max_interval_s)})",
        )

    def next_interval(self, history: Sequence[Observation], bounds: Bounds) -> IntervalDecision:
        """How long to wait after the newest collect in `history`."""
        at, rows = _columns(history)
        return self.decide(at, rows, bounds)


class FixedInterval(_RatePolicy):
    """The hand-set policy: always the budget interval."""

    name = "fixed interval"

    def decide(self, at: Sequence[float], rows: Sequence[int], bounds: Bounds) -> IntervalDecision:
        """The budget interval, whatever the history."""
        interval = bounds.clamp(bounds.budget_s)
        return IntervalDecision(
            interval, f"fixed interval at the run budget: {_duration(interval)}"
        )


def cho_garcia_molina(changed: int, polls: int, mean_interval_s: float) -> float:
    """Cho & Garcia-Molina's improved estimator r̂ = -log((n - X + 0.5)/(n + 0.5)) / I."""
    return -math.log((polls - changed + 0.5) / (polls + 0.5)) / mean_interval_s


@dataclass
class ChoGarciaMolina(_RatePolicy):
    """Change rate from the recent polls that saw a change (Poisson), against the long run."""

    recent: int = 12  # polls in the recent estimate
    floor: float = RATIO_LIMITS[0]
    ceiling: float = RATIO_LIMITS[1]
    name = "Cho-Garcia-Molina"

    def ratio(self, at: Sequence[float], rows: Sequence[int], budget: float) -> tuple[float, str]:
        """Recent estimated change rate over the whole history's."""
        n_all = len(at) - 1
        n = min(self.recent, n_all)
        changed_all = sum(1 for r in rows[1:] if r > 0)
        changed = sum(1 for r in rows[-n:] if r > 0)
        long = cho_garcia_molina(changed_all, n_all, (at[-1] - at[0]) / n_all)
        recent = cho_garcia_molina(changed, n, (at[-1] - at[-n - 1]) / n)
        if long <= 0:
            return RATIO_LIMITS[1] if recent > 0 else 1.0, "no change seen yet"
        return recent / long, f"{changed}/{n} recent polls changed ({changed_all}/{n_all} in all)"


def _log_ratio(observed_rows: float, expected_rows: float) -> float:
    return math.log((observed_rows + 0.5) / (expected_rows + 0.5))


def features(at: Sequence[float], rows: Sequence[int], budget: float) -> list[float]:
    """Scale-free features of a history (rates relative to its long-run rate, times to budget)."""
    rate = long_run_rate(at, rows)
    now = at[-1]
    out: list[float] = [math.log(rate * budget + 1e-3)]
    n = len(at) - 1
    for window in (1, 3, 10, 30):
        w = min(window, n)
        out.append(_log_ratio(sum(rows[-w:]), rate * (now - at[-w - 1])))
    streak = 0
    for r in reversed(rows[1:]):
        if r > 0:
            break
        streak += 1
    last_change = next((at[i] for i in range(len(at) - 1, 0, -1) if rows[i] > 0), at[0])
    out += [
        math.log1p(streak),
        1.0 if rows[-1] > 0 else 0.0,
        math.log1p((now - last_change) / budget),
        math.log1p((now - last_change) * rate),
        math.log((now - at[-2]) / budget),
    ]
    # The same time of day (and week) in the past: where a daily rhythm shows.
    for lag in (DAY_S, 2 * DAY_S, 7 * DAY_S):
        start = now - lag
        lo = bisect.bisect_right(at, start)
        if lo == 0 or start + budget > now:
            out += [0.0, 0.0]
            continue
        hi = min(bisect.bisect_right(at, start + budget), len(at) - 1)
        hi = max(hi, lo)
        span = at[hi] - at[lo - 1]
        out += [_log_ratio(sum(rows[lo : hi + 1]), rate * span), 1.0]
    return out


@dataclass
class LearnedScheduler(_RatePolicy):
    """A Poisson GLM of the next budget interval's rate (relative to the long run) on features."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray  # feature standardisation, learned on the training traces
    std: np.ndarray
    clip: float = 4.0  # standardised features are kept within ±clip
    floor: float = RATIO_LIMITS[0]
    ceiling: float = RATIO_LIMITS[1]
    name = "scheduling model"

    def ratio(self, at: Sequence[float], rows: Sequence[int], budget: float) -> tuple[float, str]:
        """The model's predicted relative rate, with the evidence it leaned on most."""
        x = np.clip(
            (np.asarray(features(at, rows, budget)) - self.mean) / self.std, -self.clip, self.clip
        )
        contributions = x * self.coef
        top = int(np.argmax(np.abs(contributions)))
        ratio = math.exp(float(contributions.sum()) + self.intercept)
        return ratio, f"strongest evidence: {FEATURE_NAMES[top]}"

    def describe(self) -> dict[str, Any]:
        """The model's weights by feature, for the logged params."""
        return {name: round(float(c), 4) for name, c in zip(FEATURE_NAMES, self.coef, strict=True)}


FEATURE_NAMES = [
    "busyness (long-run rows per budget interval)",
    "rows of the last collect",
    "rows of the last 3 collects",
    "rows of the last 10 collects",
    "rows of the last 30 collects",
    "empty collects in a row",
    "last collect found rows",
    "time since the last change (budget units)",
    "time since the last change (mean gaps)",
    "last interval",
    "rows at this time yesterday",
    "yesterday seen",
    "rows at this time 2 days ago",
    "2 days ago seen",
    "rows at this time a week ago",
    "a week ago seen",
]
