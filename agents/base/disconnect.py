"""Stopping an action whose caller went away.

The engine asks an agent to stop a step (its run was cancelled or ran out of time) by closing
the connection, as Temporal delivers an activity's cancellation on its next heartbeat: here
the agent notices at once, because the ASGI server reports `http.disconnect` as soon as the
socket closes. The action's task is cancelled at its next await; work already handed to a
thread finishes, but its result is no longer recorded as done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class CallerGone(Exception):
    """The caller closed the connection before the action finished."""


async def _disconnected(request: Request) -> None:
    # The body has been read: the next message the server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_caller_leaves(work: Awaitable[T], request: Request) -> T:
    """Run `work`; cancel it and raise CallerGone if the caller disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise CallerGone()
    return task.result()
