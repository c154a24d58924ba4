"""Waiting in tests for state that lives elsewhere (a database, another process): poll it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within_s: float = 10.0, what: str = "condition"
) -> None:
    """Return once `check()` holds; fail the test, naming `what`, if it does not within
    `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.05)
