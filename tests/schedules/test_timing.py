"""Fire-time arithmetic: cron in time zones across DST changes, intervals, jitter, backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.orchestrator_controller.schedules.timing import (
    Timing,
    backoff,
    jitter_for,
    normalise_cron,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_every_six_hours_in_utc() -> None:
    timing = Timing(cron="0 */6 * * *")
    assert timing.upcoming(utc(2026, 1, 1, 5, 10), 3) == [
        utc(2026, 1, 1, 6),
        utc(2026, 1, 1, 12),
        utc(2026, 1, 1, 18),
    ]
    # strictly after: a fire at exactly t is not "next"
    assert timing.next_after(utc(2026, 1, 1, 6)) == utc(2026, 1, 1, 12)


def test_wall_clock_time_follows_the_zone_across_dst() -> None:
    nine_in_new_york = Timing(cron="0 9 * * *", timezone="America/New_York")
    winter, summer = utc(2026, 1, 10), utc(2026, 7, 10)
    assert nine_in_new_york.next_after(winter) == utc(2026, 1, 10, 14)  # EST, UTC-5
    assert nine_in_new_york.next_after(summer) == utc(2026, 7, 10, 13)  # EDT, UTC-4


def test_a_daily_job_in_the_repeated_hour_fires_once_on_fall_back() -> None:
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    fires, total = timing.fires_between(utc(2026, 10, 24), utc(2026, 10, 27), keep=10)
    # 25 Oct: 02:30 CEST happens (00:30 UTC); the repeat at 02:30 CET does not fire again
    assert fires == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert total == 3
    forward = timing.upcoming(utc(2026, 10, 24, 12), 2)
    assert forward == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_a_daily_job_in_the_skipped_hour_fires_once_on_spring_forward() -> None:
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = timing.upcoming(utc(2026, 3, 28, 12), 2)
    # 29 Mar has no 02:30: it fires once, right after the gap (03:00 CEST = 01:00 UTC)
    assert fires == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]


def test_an_hourly_job_fires_every_elapsed_hour_through_dst() -> None:
    hourly = Timing(cron="0 * * * *", timezone="Europe/Berlin")
    # local days of 25 and 23 real hours
    _, fall = hourly.fires_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 22, 59), keep=1)
    _, spring = hourly.fires_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 21, 59), keep=1)
    assert (fall, spring) == (25, 23)


def test_intervals_count_from_their_anchor() -> None:
    timing = Timing(interval_s=3600, anchor_at=utc(2026, 1, 1, 0, 30))
    assert timing.next_after(utc(2025, 12, 1)) == utc(2026, 1, 1, 0, 30)
    assert timing.next_after(utc(2026, 1, 1, 3, 30)) == utc(2026, 1, 1, 4, 30)
    fires, total = timing.fires_between(utc(2026, 1, 1), utc(2026, 1, 1, 3, 30), keep=2)
    assert (fires, total) == ([utc(2026, 1, 1, 2, 30), utc(2026, 1, 1, 3, 30)], 4)


def test_fires_between_keeps_the_latest_and_counts_them_all() -> None:
    timing = Timing(cron="0 * * * *")
    fires, total = timing.fires_between(utc(2026, 1, 1, 0), utc(2026, 1, 1, 9, 59), keep=3)
    assert fires == [utc(2026, 1, 1, 7), utc(2026, 1, 1, 8), utc(2026, 1, 1, 9)]
    assert total == 10
    assert timing.fires_between(utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 59), keep=3) == ([], 0)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("@hourly", "0 * * * *"), ("  0   */6 * * * ", "0 */6 * * *"), ("@daily", "0 0 * * *")],
)
def test_cron_expressions_are_normalised(expression: str, expected: str) -> None:
    assert normalise_cron(expression) == expected


@pytest.mark.parametrize(
    "expression", ["not cron", "61 * * * *", "* * * *", "0 0 * * * *", "0 0 30 2 *"]
)
def test_bad_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        normalise_cron(expression)


def test_jitter_is_bounded_and_the_same_on_every_replica() -> None:
    schedule_id = uuid.uuid4()
    delays = [jitter_for(schedule_id, utc(2026, 1, 1, h), 120) for h in range(24)]
    assert all(timedelta(0) <= d < timedelta(seconds=120) for d in delays)
    assert len(set(delays)) > 1  # spread, not a constant offset
    assert delays[3] == jitter_for(schedule_id, utc(2026, 1, 1, 3), 120)
    assert jitter_for(schedule_id, utc(2026, 1, 1), 0) == timedelta(0)


def test_backoff_doubles_up_to_its_cap() -> None:
    waits = [backoff(n, 10, 60).total_seconds() for n in range(6)]
    assert waits == [0, 10, 20, 40, 60, 60]
