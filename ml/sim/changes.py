"""Seeded change processes of a source, in simulated seconds: what a collect at time t finds.

A trace is the list of instants at which a source gained rows (each change brings one or more
rows) over a horizon. Families:
- `poisson`: a constant rate;
- `bursty`: a two-state Markov-modulated Poisson process (long quiet spells, short busy ones);
- `diurnal`: a rate following the time of day (business hours at a random phase), by thinning;
- `dormant`: months-long silence in miniature: dormant spells of days, then active spells;
- `rate_change`: a piecewise constant rate that jumps to a new level at random instants;
- `mixture`: a diurnal source with bursts on top (kept out of training: a held-out family).
Collects are answered from prefix sums, so a query costs O(log n) however long the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86400.0
FAMILIES = ("poisson", "bursty", "diurnal", "dormant", "rate_change", "mixture")


@dataclass(frozen=True)
class Collect:
    """What one collect found: rows new since the previous collect and the cursor's advance."""

    rows: int
    changes: int
    cursor: int  # rows ever written up to the collect (an auto-increment id, say)
    last_change_at: float | None  # the newest change's time (a timestamp cursor), if any new


@dataclass(frozen=True)
class ChangeTrace:
    family: str
    seed: int
    horizon_s: float
    times: np.ndarray  # change instants, sorted
    rows: np.ndarray  # rows per change (>= 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cum_rows", np.concatenate([[0], np.cumsum(self.rows)]))
        weighted = np.cumsum(self.rows * self.times)
        object.__setattr__(self, "_cum_row_time", np.concatenate([[0.0], weighted]))

    @property
    def mean_rate(self) -> float:
        """Rows per second over the whole horizon."""
        return float(self.rows.sum()) / self.horizon_s

    @property
    def mean_change_gap_s(self) -> float:
        """Mean time between changes over the horizon."""
        return self.horizon_s / max(len(self.times), 1)

    def index(self, t: float) -> int:
        """How many changes happened at or before `t`."""
        return int(np.searchsorted(self.times, t, side="right"))

    def collect(self, since: float, until: float) -> Collect:
        """A collect at `until` after one at `since`: the rows changed in (since, until]."""
        lo, hi = self.index(since), self.index(until)
        rows = int(self._cum_rows[hi] - self._cum_rows[lo])  # type: ignore[attr-defined]
        last = float(self.times[hi - 1]) if hi > lo else None
        return Collect(rows, hi - lo, int(self._cum_rows[hi]), last)  # type: ignore[attr-defined]

    def delay_row_s(self, since: float, until: float) -> float:
        """Sum over rows changed in (since, until] of how long each waited to be collected."""
        lo, hi = self.index(since), self.index(until)
        cum_rows, cum_rt = self._cum_rows, self._cum_row_time  # type: ignore[attr-defined]
        return float(until * (cum_rows[hi] - cum_rows[lo]) - (cum_rt[hi] - cum_rt[lo]))

    def age_area(self, since: float, until: float) -> float:
        """Integral over (since, until] of the age of the oldest change not yet collected."""
        lo, hi = self.index(since), self.index(until)
        if hi == lo:
            return 0.0
        return float((until - self.times[lo]) ** 2 / 2)

    def rows_between(self, since: float, until: float) -> int:
        """Rows changed in (since, until] (the oracle's view: for training targets)."""
        cum_rows = self._cum_rows  # type: ignore[attr-defined]
        return int(cum_rows[self.index(until)] - cum_rows[self.index(since)])


def _poisson(rng: np.random.Generator, rate: float, start: float, end: float) -> np.ndarray:
    end = max(end, start)
    count = rng.poisson(rate * (end - start))
    return np.sort(rng.uniform(start, end, count))


def _modulated(
    rng: np.random.Generator, horizon: float, spells: list[tuple[float, float]], rates: list[float]
) -> np.ndarray:
    """Poisson changes at `rates[i]` during each spell (start, end)."""
    parts = [_poisson(rng, r, a, min(b, horizon)) for (a, b), r in zip(spells, rates, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _alternating(
    rng: np.random.Generator, horizon: float, mean_off: float, mean_on: float
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Alternating off/on spells with exponential lengths: (off spells, on spells)."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    t = rng.uniform(0, mean_off)
    off.append((0.0, t))
    while t < horizon:
        length = rng.exponential(mean_on)
        on.append((t, t + length))
        t += length
        length = rng.exponential(mean_off)
        off.append((t, t + length))
        t += length
    return off, on


def _diurnal(rng: np.random.Generator, horizon: float, rate: float) -> np.ndarray:
    """Changes whose rate peaks once a day at a random hour (weekends quieter), by thinning."""
    peak = rng.uniform(0, DAY_S)
    sharpness = rng.uniform(1.5, 4.0)
    weekend = rng.uniform(0.05, 1.0)
    candidates = _poisson(rng, rate * np.exp(sharpness), 0.0, horizon)
    phase = np.cos(2 * np.pi * (candidates - peak) / DAY_S)
    shape = np.exp(sharpness * (phase - 1) + sharpness)
    day = (candidates // DAY_S).astype(int) % 7
    shape = shape * np.where(day >= 5, weekend, 1.0)
    keep = rng.uniform(0, np.exp(sharpness), len(candidates)) < shape
    return candidates[keep]


def make_trace(family: str, seed: int, horizon_s: float = 14 * DAY_S) -> ChangeTrace:
    """A reproducible trace of `family` (same family and seed, same trace)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    rng = np.random.default_rng([FAMILIES.index(family), seed])
    # mean time between changes of the active source: from minutes to hours
    gap = float(np.exp(rng.uniform(np.log(300), np.log(6 * 3600))))
    rate = 1 / gap
    if family == "poisson":
        times = _poisson(rng, rate, 0, horizon_s)
    elif family == "bursty":
        off, on = _alternating(rng, horizon_s, gap * rng.uniform(8, 40), gap * rng.uniform(2, 8))
        times = _modulated(rng, horizon_s, on, [rate * rng.uniform(3, 10) for _ in on])
        times = np.concatenate([times, _modulated(rng, horizon_s, off, [rate * 0.05] * len(off))])
    elif family == "diurnal":
        times = _diurnal(rng, horizon_s, rate)
    elif family == "dormant":
        off, on = _alternating(
            rng, horizon_s, DAY_S * rng.uniform(1, 4), DAY_S * rng.uniform(0.2, 1)
        )
        times = _modulated(rng, horizon_s, on, [rate * rng.uniform(1, 4) for _ in on])
    elif family == "rate_change":
        cuts = np.sort(rng.uniform(0, horizon_s, rng.integers(2, 6)))
        edges = [0.0, *cuts.tolist(), horizon_s]
        spells = list(zip(edges, edges[1:], strict=False))
        times = _modulated(
            rng, horizon_s, spells, [rate * 4 ** rng.uniform(-1.5, 1.5) for _ in spells]
        )
    else:  # mixture: diurnal with bursts on top
        off, on = _alternating(rng, horizon_s, gap * rng.uniform(10, 40), gap * rng.uniform(2, 6))
        bursts = _modulated(rng, horizon_s, on, [rate * rng.uniform(2, 6) for _ in on])
        times = np.concatenate([_diurnal(rng, horizon_s, rate * 0.5), bursts])
    times = np.sort(times[(times > 0) & (times < horizon_s)])
    # most changes bring a row or a few; some bring a batch
    rows = 1 + rng.geometric(rng.uniform(0.3, 0.9), len(times)) - 1
    return ChangeTrace(family, seed, horizon_s, times, rows.astype(np.int64))
