"""Running coroutines in the background for the life of an app, and stopping them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def background(*coroutines: Coroutine[Any, Any, Any] | None) -> AsyncIterator[None]:
    """Run the coroutines as tasks while the block runs; cancel them when it ends."""
    tasks = [asyncio.create_task(c) for c in coroutines if c is not None]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
