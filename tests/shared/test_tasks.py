"""shared/tasks.py: background tasks for the life of an app; asked to stop first, cancelled
only when they do not, and never left to keep the service from exiting."""

from __future__ import annotations

import asyncio

import pytest

from shared import tasks
from shared.tasks import background


async def test_a_task_asked_to_stop_ends_on_its_own() -> None:
    stop = asyncio.Event()
    ended: list[str] = []

    async def loop() -> None:
        try:
            await stop.wait()
            ended.append("returned")
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async with background(loop(), stoppers=[stop.set]):
        await asyncio.sleep(0)  # the task starts
    assert ended == ["returned"]


async def test_a_task_that_does_not_stop_is_cancelled_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "STOP_GRACE_S", 0.05)
    ended: list[str] = []

    async def deaf() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async with background(deaf(), None, stoppers=[lambda: None]):  # None: a loop turned off
        await asyncio.sleep(0)
    assert ended == ["cancelled"]


async def test_without_stoppers_tasks_are_cancelled_and_a_failure_is_not_raised() -> None:
    started = asyncio.Event()

    async def fails() -> None:
        started.set()
        raise RuntimeError("boom")

    async def waits() -> None:
        await asyncio.Event().wait()

    async with background(fails(), waits()):
        await started.wait()
    # Leaving the block neither raised the failure nor hung on the waiting task.
