"""Running coroutines in the background for the life of an app, and stopping them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

STOP_WAIT_S = 10.0
# How long tasks asked to stop (`stoppers`) have to end on their own before they are cancelled.
STOP_GRACE_S = 5.0
log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def background(
    *coroutines: Coroutine[Any, Any, Any] | None,
    stoppers: Iterable[Callable[[], None]] = (),
) -> AsyncIterator[None]:
    """Run the coroutines as tasks while the block runs; stop them when it ends.

    Each of `stoppers` is called first and the tasks get STOP_GRACE_S to return by
    themselves; whatever still runs is then cancelled.
    """
    tasks = [asyncio.create_task(c) for c in coroutines if c is not None]
    try:
        yield
    finally:
        asked = False
        for stop in stoppers:
            stop()
            asked = True
        if asked and tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task cancelled in the middle of a database call can stay stuck in the
            # driver (asyncpg#873); the service then exits without it rather than never.
            done, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a failure at shutdown is not worth a warning
            for task in stuck:
                where = io.StringIO()
                task.print_stack(file=where)
                log.error(
                    "background task %s ignored its cancel; left behind\n%s",
                    task.get_name(),
                    where.getvalue(),
                )
