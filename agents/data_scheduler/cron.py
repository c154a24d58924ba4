"""Cron expressions in a time zone: parsing (croniter), next run times across DST, descriptions.

croniter walks the expression in local wall-clock time; each wall time is then placed in the
zone with zoneinfo. Daylight-saving transitions follow the convention of Vixie cron / cronie:
- a wall time skipped by the spring-forward gap runs once, shifted by the gap (02:30 -> 03:30),
  unless the expression fires every hour, whose runs simply continue after the gap;
- a wall time repeated by the fall-back overlap runs once (at its first occurrence), unless the
  expression fires every hour, which runs in both occurrences (elapsed time keeps its pace).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

_DAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTH_NAMES = [
    "",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
]
_ALIASES = {
    "@yearly": "once a year, at midnight on 1 January",
    "@annually": "once a year, at midnight on 1 January",
    "@monthly": "once a month, at midnight on the 1st",
    "@weekly": "once a week, at midnight on Sunday",
    "@daily": "once a day, at midnight",
    "@midnight": "once a day, at midnight",
    "@hourly": "once an hour, at minute 0",
}
# Far enough past a DST overlap that no later wall time can map to an earlier instant.
_OVERLAP_MARGIN = timedelta(hours=3)


class CronError(ValueError):
    """An expression or time zone that cannot be used."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; CronError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc


def parse(expression: str) -> croniter:
    """A croniter for `expression` (5 fields or an @alias); CronError if invalid."""
    expression = " ".join(expression.split())
    if len(expression.split(" ")) not in (1, 5):
        raise CronError(
            f"{expression!r} must have 5 fields (minute hour day-of-month month day-of-week) "
            "or be an alias such as @daily"
        )
    try:
        return croniter(expression, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError) as exc:
        raise CronError(f"invalid cron expression {expression!r}: {exc}") from exc


def _every_hour(expression: str) -> bool:
    return parse(expression).expanded[1] == ["*"]


def next_runs(expression: str, tz_name: str, count: int, start: datetime) -> list[datetime]:
    """The next `count` run instants strictly after `start`, as aware datetimes in the zone."""
    tz = zone(tz_name)
    hourly = _every_hour(expression)
    start = start if start.tzinfo else start.replace(tzinfo=tz)
    # Compare instants in UTC: aware datetimes sharing a ZoneInfo compare by wall time only.
    start_utc = start.astimezone(UTC)
    local_start = start_utc.astimezone(tz).replace(tzinfo=None)
    iterator = croniter(" ".join(expression.split()), local_start - _OVERLAP_MARGIN)
    found: set[datetime] = set()
    runs: list[datetime] = []
    for _ in range(count * 4 + 1000):
        try:
            wall: datetime = iterator.get_next(datetime)
        except CroniterBadDateError:  # an expression that never fires again (30 February)
            break
        for instant in _place(wall, tz, hourly):
            if instant > start_utc and instant not in found:
                found.add(instant)
                runs.append(instant)
        runs.sort()
        if len(runs) >= count:
            last_wall = runs[count - 1].astimezone(tz).replace(tzinfo=None)
            if wall - _OVERLAP_MARGIN > last_wall:
                break
    return [r.astimezone(tz) for r in runs[:count]]


def _place(wall: datetime, tz: ZoneInfo, hourly: bool) -> list[datetime]:
    """The instants a wall-clock time in `tz` stands for under the DST conventions above."""
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    round_trip = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if round_trip != wall:  # inside the spring-forward gap: this wall time does not exist
        return [] if hourly else [first.astimezone(UTC)]
    if first.utcoffset() != second.utcoffset():  # inside the fall-back overlap
        both = [first.astimezone(UTC), second.astimezone(UTC)]
        return sorted(both) if hourly else [first.astimezone(UTC)]
    return [first.astimezone(UTC)]


def _field(values: list[Any], unit: str, span: int, names: list[str] | None = None) -> str:
    """One field in words: "every 15 minutes", "hours 9-17", "weekday Mon, Fri"."""
    labels = [names[v] if names and isinstance(v, int) else str(v) for v in values]
    if len(values) > 1 and all(isinstance(v, int) for v in values):
        steps = {b - a for a, b in zip(values, values[1:], strict=False)}
        if len(steps) == 1:
            step = steps.pop()
            regular = len(values) > 2 or (unit in ("minute", "hour") and values[0] == 0)
            if step > 1 and regular and values[-1] + step >= span:
                return f"every {step} {unit}s"
            if step == 1 and len(values) > 2:
                return f"{unit}s {labels[0]}-{labels[-1]}"
    return f"{unit}{'s' if len(values) > 1 else ''} {', '.join(labels)}"


def describe(expression: str) -> str:
    """A short English description of the expression."""
    text = " ".join(expression.split())
    if text.lower() in _ALIASES:
        return _ALIASES[text.lower()]
    minutes, hours, days, months, weekdays = parse(text).expanded[:5]
    if len(minutes) == 1 and len(hours) == 1 and minutes != ["*"] and hours != ["*"]:
        parts = [f"at {hours[0]:02d}:{minutes[0]:02d}"]
    else:
        parts = ["every minute" if minutes == ["*"] else _field(minutes, "minute", 60)]
        if hours != ["*"]:
            parts.append(_field(hours, "hour", 24))
    for values, unit, span, names, preposition in (
        (days, "day", 32, None, "on"),
        (months, "month", 13, _MONTH_NAMES, "in"),
        (weekdays, "weekday", 7, _DAY_NAMES, "on"),
    ):
        if values != ["*"]:
            words = _field(values, unit, span, names)
            parts.append(words if words.startswith("every") else f"{preposition} {words}")
    return ", ".join(parts)
