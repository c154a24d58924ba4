"""Structured logs: one JSON object per line, naming the run and step it is about, secrets masked.

Every service calls `configure_logging` in its app factory. Lines go to stderr (the launcher
writes each service's output to var/logs/<service>.log; compose and Kubernetes collect it), so
one reader can merge a run's lines from every service (`GET /workflows/{id}/logs`).

The run, step and attempt a line is about come from context variables bound where they are
known (an agent's request, an engine's step task), or from `extra=` on the call itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretBytes, SecretStr

from shared.tracing import trace_id_of

RUN_ID: ContextVar[str | None] = ContextVar("run_id", default=None)
STEP_ID: ContextVar[str | None] = ContextVar("step_id", default=None)
ATTEMPT: ContextVar[int | None] = ContextVar("attempt", default=None)
# The run's trace (32 hex): the id the UI shows, and the OpenTelemetry trace id of its spans.
TRACE_ID: ContextVar[str | None] = ContextVar("trace_id", default=None)
_CONTEXT = (
    ("run_id", RUN_ID),
    ("step_id", STEP_ID),
    ("attempt", ATTEMPT),
    ("trace_id", TRACE_ID),
)

MASK = "***"
# Shorter values are not masked: replacing every "ab" in every line would garble the logs,
# and a secret that short is no secret.
MIN_SECRET_CHARS = 4
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_BARE = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_CORE = (
    "ts",
    "level",
    "service",
    "logger",
    "message",
    "run_id",
    "step_id",
    "attempt",
    "trace_id",
    "exc",
)
# Requests to these answer probes (every few seconds, from the controller and Kubernetes): a
# line each only when they fail.
QUIET_PATHS = frozenset({"/health", "/metrics"})


def bind(
    *,
    run_id: object = None,
    step_id: str | None = None,
    attempt: int | None = None,
    trace_id: str | None = None,
) -> list[Token[Any]]:
    """Set the run/step/attempt/trace of the lines logged from here on in this context (task)."""
    tokens: list[Token[Any]] = []
    if run_id is not None:
        tokens.append(RUN_ID.set(str(run_id)))
    if step_id is not None:
        tokens.append(STEP_ID.set(step_id))
    if attempt is not None:
        tokens.append(ATTEMPT.set(attempt))
    if trace_id is not None:
        tokens.append(TRACE_ID.set(trace_id))
    return tokens


def unbind(tokens: list[Token[Any]]) -> None:
    """Undo `bind`."""
    for token in reversed(tokens):
        token.var.reset(token)


def _extras(record: logging.LogRecord) -> Iterable[str]:
    fields = record.__dict__
    # Most lines have no extras: counting the attributes is cheaper than a set difference.
    return fields.keys() - _STANDARD if len(fields) > _BARE else ()


@contextmanager
def log_context(
    *,
    run_id: object = None,
    step_id: str | None = None,
    attempt: int | None = None,
    trace_id: str | None = None,
) -> Iterator[None]:
    """`bind` for the duration of a block."""
    tokens = bind(run_id=run_id, step_id=step_id, attempt=attempt, trace_id=trace_id)
    try:
        yield
    finally:
        unbind(tokens)


class JsonFormatter(logging.Formatter):
    """ts, level, service, logger, message, run_id/step_id/attempt/trace_id when known, exc,
    extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second = -1
        self._stamp = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # formatting the date is most of the cost: once a second
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1_000_000):06d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON (no newline inside: tracebacks are escaped in `exc`)."""
        entry: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name, var in _CONTEXT:
            value = fields.get(name, None)
            if value is None:
                value = var.get()
            if value is not None:
                entry[name] = value if name == "attempt" else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for name in _extras(record):
            if name not in entry and name not in _CORE:
                entry[name] = fields[name]
        return _ENCODE(entry)


class RedactSecrets(logging.Filter):
    """Replace each secret value with *** in a record's message, exception text and extras."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first: a secret containing another is masked whole.
        self.secrets = tuple(
            sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        )
        self._traceback = logging.Formatter()

    def redact(self, text: str) -> str:
        """`text` with every secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place (handlers after this one see the masked text); keep it."""
        if not self.secrets:
            return True
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        fields = record.__dict__
        for name in _extras(record):
            if isinstance(fields[name], str):
                fields[name] = self.redact(fields[name])
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # StreamHandler assigns it once: the handler keeps following sys.stderr instead


def secret_values(settings: BaseModel) -> list[str]:
    """Every SecretStr in `settings` (nested models, lists, dicts too) and URL passwords."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, SecretBytes):
            found.append(value.get_secret_value().decode(errors="replace"))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)
        elif isinstance(value, str) and "://" in value:
            # DATABASE_URL and the like are plain strings that may carry a password.
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.append(password)

    walk(settings)
    return [s for s in found if s]


def set_log_level(level: str | int) -> None:
    """Set the level of the root logger (every platform logger follows it), at start or live.

    httpx says INFO for every request it sends: the controller's health polls alone would
    fill its log, so httpx and httpcore stay at WARNING unless the level is DEBUG. Our own
    lines say what was called, and how it went.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"{level!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    logging.getLogger().setLevel(numeric)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(
            numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )


def configure_logging(
    service: str, level: str | int | None = None, *, secrets: Iterable[str] = ()
) -> logging.Handler:
    """Send every log record to stderr as a JSON line with `service`; mask `secrets`.

    `level` defaults to LOG_LEVEL (INFO). Calling it again (another app in the same process)
    replaces the handler it installed before; handlers of others (pytest's) stay.
    """
    chosen = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    numeric = logging.getLevelName(chosen.upper()) if isinstance(chosen, str) else chosen
    if not isinstance(numeric, int):
        raise ValueError(
            f"LOG_LEVEL={chosen!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    set_log_level(numeric)
    # uvicorn's own lines (startup errors, "Exception in ASGI application") become JSON lines
    # too; its access log stays off: `log_requests` writes one line per request instead.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    return handler


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ID_HEADERS = {
    b"x-run-id": "run_id",
    b"x-step-id": "step_id",
    b"x-attempt": "attempt",
    b"traceparent": "trace_id",
}


class RequestLog:
    """ASGI middleware: one line per request (method, path, status, duration_ms).

    With `bind_headers`, the X-Run-Id / X-Step-Id / X-Attempt headers the engine sends on an
    agent call, and the trace id of its `traceparent`, are bound for the whole request, so
    every line the action logs names its step and trace.
    """

    def __init__(self, app: ASGIApp, *, logger: str, bind_headers: bool = False) -> None:
        self.app = app
        self.log = logging.getLogger(logger)
        self.bind_headers = bind_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        tokens = self._bind(scope) if self.bind_headers else []

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._line(scope, status, started, failure)
            unbind(tokens)

    def _bind(self, scope: Scope) -> list[Token[Any]]:
        found: dict[str, Any] = {}
        for name, value in scope["headers"]:
            key = _ID_HEADERS.get(name)
            if key is None:
                continue
            # Bounded: a header is the client's text (the agent itself rejects a bad id).
            text = value.decode("latin-1")[:64]
            if key == "attempt":
                if text.isdigit():
                    found[key] = int(text)
            elif key == "trace_id":
                trace_id = trace_id_of(text)
                if trace_id is not None:
                    found[key] = trace_id
            else:
                found[key] = text
        return bind(**found) if found else []

    def _line(
        self, scope: Scope, status: int, started: float, failure: BaseException | None
    ) -> None:
        path = scope.get("path", "")
        crashed = isinstance(failure, Exception)
        if failure is not None and not crashed:
            level = logging.INFO  # cancelled (shutdown, the caller hung up): not an error
        elif crashed or status >= 500:
            level = logging.ERROR
        elif status >= 400:
            level = logging.WARNING
        elif path in QUIET_PATHS:
            return
        else:
            level = logging.INFO
        if not self.log.isEnabledFor(level):
            return
        method = scope.get("method", "")
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        outcome = "cancelled" if failure is not None and not crashed else status
        self.log.log(
            level,
            "%s %s %s %.0f ms",
            method,
            path,
            outcome,
            duration_ms,
            exc_info=failure if crashed else None,
            extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
        )
