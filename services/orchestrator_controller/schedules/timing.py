"""When a schedule fires: cron in a time zone (DST-correct), fixed intervals, jitter, backoff.

Cron semantics across daylight-saving changes follow classic cron: a wall time skipped by a
spring-forward fires once, at the first instant after the gap; a wall time repeated by a
fall-back fires once, at its first occurrence, unless the hour field is `*` (then each
elapsed hour fires). Every instant returned is an aware UTC datetime.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# enough to find every fire in any window a schedule looks at, without running forever
MAX_SCAN = 10_000


def normalise_cron(expression: str) -> str:
    """A five-field cron expression (aliases expanded); ValueError when it is not one."""
    expr = ALIASES.get(expression.strip().lower(), expression.strip())
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    if not croniter.is_valid(expr):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{expression!r} never fires (no such date)") from None
    return " ".join(fields)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name; ValueError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class Timing:
    """The fire times of a cron or interval schedule."""

    cron: str | None = None
    timezone: str = "UTC"
    interval_s: float | None = None
    anchor_at: datetime | None = None

    def _cron_iter(self, start: datetime, forward: bool) -> Iterator[datetime]:
        assert self.cron is not None
        tz = zone(self.timezone)
        repeat_folds = self.cron.split()[1] == "*"
        it = croniter(self.cron, start.astimezone(tz))
        while True:
            raw = it.get_next(datetime) if forward else it.get_prev(datetime)
            instant = raw.astimezone(UTC)
            local = instant.astimezone(tz)
            first = local.replace(fold=0)
            repeated = local.fold == 1 and first.utcoffset() != local.utcoffset()
            if repeated and not repeat_folds:
                continue  # the second pass through a fall-back hour: already fired
            yield instant

    def _interval(self) -> tuple[datetime, timedelta]:
        assert self.interval_s is not None and self.anchor_at is not None
        return self.anchor_at.astimezone(UTC), timedelta(seconds=self.interval_s)

    def next_after(self, t: datetime) -> datetime:
        """The first fire strictly after `t`."""
        if self.cron is not None:
            return next(self._cron_iter(t, forward=True))
        anchor, step = self._interval()
        if t < anchor:
            return anchor
        k = math.floor((t - anchor) / step) + 1
        return anchor + k * step

    def upcoming(self, t: datetime, count: int) -> list[datetime]:
        """The next `count` fires after `t`."""
        out: list[datetime] = []
        current = t
        for _ in range(count):
            current = self.next_after(current)
            out.append(current)
        return out

    def fires_between(
        self, start: datetime, end: datetime, *, keep: int
    ) -> tuple[list[datetime], int]:
        """The latest `keep` fires in [start, end] (oldest first) and how many there are in all.

        The total stops counting at MAX_SCAN: after a very long outage it is a lower bound.
        """
        if end < start:
            return [], 0
        if self.cron is None:
            anchor, step = self._interval()
            first = max(math.ceil((start - anchor) / step), 0)
            last = math.floor((end - anchor) / step)
            total = max(last - first + 1, 0)
            kept = [anchor + k * step for k in range(max(first, last - keep + 1), last + 1)]
            return kept, total
        latest: list[datetime] = []
        total = 0
        # Walk back from a minute after `end` (cron ignores sub-minute parts of the start) so
        # that a fire at exactly `end` is included; later ones are passed over.
        for fire in self._cron_iter(end + timedelta(minutes=1), forward=False):
            if fire > end:
                continue
            if fire < start or total >= MAX_SCAN:
                break
            total += 1
            if len(latest) < keep:
                latest.append(fire)
        return sorted(latest), total


def jitter_for(schedule_id: object, fire_at: datetime, jitter_s: float) -> timedelta:
    """A delay in [0, jitter_s) that every replica computes alike for the same fire."""
    if jitter_s <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}:{fire_at.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=round(fraction * jitter_s, 3))


def backoff(failures: int, initial_s: float, max_s: float) -> timedelta:
    """The pause before the next continuous run after `failures` failed runs in a row."""
    if failures <= 0:
        return timedelta(0)
    return timedelta(seconds=min(initial_s * 2 ** (failures - 1), max_s))
