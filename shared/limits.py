"""A cap on request bodies, enforced before any handler (or authentication) reads them.

Pure ASGI rather than a FastAPI dependency: a dependency runs after routing and only sees
the body once Starlette has read it whole, so a 50 MB body would be buffered before its 413.
Here a declared `Content-Length` over the cap is refused at once, and a body sent without
one (chunked) is read here up to the cap, no further, before the app sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int | Callable[[], int], setting: str) -> None:
        self.app = app
        # a callable is read at each request: the cap may change while the service runs
        self._max_bytes = max_bytes
        self.setting = setting

    @property
    def max_bytes(self) -> int:
        return self._max_bytes() if callable(self._max_bytes) else self._max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        max_bytes = self.max_bytes
        if declared is not None and declared > max_bytes:
            await _discard(receive)
            await self._refuse(send, max_bytes)
            return
        if declared is not None:
            await self.app(scope, receive, send)  # the server holds it to its declared length
            return
        # No declared length (chunked): read it here, keeping at most the cap, then replay it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > max_bytes:
                chunks.clear()
                await _discard(receive)
                await self._refuse(send, max_bytes)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        body: dict[str, Any] = {
            "error": "body_too_large",
            "message": f"request body over {max_bytes} bytes; the limit is {self.setting}",
            "retryable": False,
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


# A client that sends its whole body before reading the answer would see the connection reset
# instead of the 413 if the server answered and hung up on an unread body (uvicorn hands the
# app no more body once it answered): read and drop, never keep, up to this much first.
_DISCARD_BYTES = 64 * 1024 * 1024


async def _discard(receive: Receive) -> None:
    dropped = 0
    while dropped < _DISCARD_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def limit_body(app: Any, settings: Any, max_bytes: Callable[[], int] | None = None) -> None:
    """Install the body cap of `settings.max_body_bytes` (or, read at each request, of
    `max_bytes()`: a cap that may change live), naming the service's own variable."""
    prefix = settings.model_config.get("env_prefix", "")
    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_bytes or settings.max_body_bytes,
        setting=f"{prefix}MAX_BODY_BYTES",
    )
