"""OpenTelemetry traces: one trace per run, its id the run's `trace_id`, exported over OTLP/HTTP.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then
nothing is installed, the API's no-op tracer answers, and every helper here returns at once.
The SDK reads the other OTEL_* variables itself (OTEL_BSP_SCHEDULE_DELAY, headers, sampler).

How a run's spans form one tree across processes:
- the controller opens the run's root span (POST /coordinate) with the run's `trace_id` as
  trace id and a span id derived from it (`root_span_id`);
- the engine, which knows only the run's row, makes each step attempt's span a child of that
  root by rebuilding its context from the `trace_id` alone (no column for a span id needed);
- the engine sends `traceparent` (W3C) on every agent call; the agent opens its server span as
  a child of the engine's step span.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# FastAPI's own telemetry, off in our apps: it would trace every request (the health polls
# too) with a server span beside ours and a few internal spans each, using our provider.
FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROPAGATOR = TraceContextTextMapPropagator()
# Set only while the SDK creates a run's root span: the ids it must take (see _RunIds).
_ROOT_TRACE: ContextVar[str | None] = ContextVar("root_trace", default=None)
_enabled = False


def enabled() -> bool:
    """Whether this process exports spans (configure_tracing found an endpoint)."""
    return _enabled


def valid_trace_id(trace_id: str | None) -> bool:
    """32 lowercase hex digits, not all zero: what W3C allows (runs get uuid4().hex)."""
    return bool(
        trace_id
        and len(trace_id) == 32
        and all(c in "0123456789abcdef" for c in trace_id)
        and trace_id.strip("0")
    )


def root_span_id(trace_id: str) -> int:
    """The span id of a run's root span: the low 64 bits of its trace id (never 0)."""
    return int(trace_id[16:32], 16) or 1


def configure_tracing(service: str) -> bool:
    """Install the SDK with an OTLP/HTTP exporter when an endpoint is set; True if it did.

    Once per process: a second app in the same process (tests) keeps the first provider.
    """
    global _enabled
    if _enabled or not any(os.environ.get(name) for name in _ENDPOINT_VARS):
        return _enabled
    # Imported here: a process without tracing never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class _RunIds(IdGenerator):
        """Random ids, except for a run's root span: the run's trace id and its root span id."""

        def generate_trace_id(self) -> int:
            wanted = _ROOT_TRACE.get()
            return int(wanted, 16) if wanted else random.getrandbits(128) or 1

        def generate_span_id(self) -> int:
            wanted = _ROOT_TRACE.get()
            return root_span_id(wanted) if wanted else random.getrandbits(64) or 1

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), id_generator=_RunIds()
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def _tracer() -> trace.Tracer:
    return trace.get_tracer("ingestion-platform")


def run_context(trace_id: str) -> Context:
    """A context whose parent is the run's root span (built from the trace id alone); an empty
    one for an id that is not a W3C trace id."""
    if not valid_trace_id(trace_id):
        return Context()
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=root_span_id(trace_id),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def run_span(
    trace_id: str, name: str, *, attributes: Mapping[str, Any], start_time: int | None = None
) -> Iterator[Span]:
    """The root span of a run (the controller accepting it), current for the block."""
    if not _enabled:
        yield INVALID_SPAN
        return
    token = _ROOT_TRACE.set(trace_id)
    try:
        span = _tracer().start_span(
            name,
            context=Context(),  # a root: whatever span is current is not its parent
            kind=SpanKind.SERVER,
            attributes=dict(attributes),
            start_time=start_time,
        )
    finally:
        _ROOT_TRACE.reset(token)
    with trace.use_span(span, end_on_exit=True):
        yield span


@contextmanager
def step_span(trace_id: str, name: str, *, attributes: Mapping[str, Any]) -> Iterator[Span]:
    """A span under the run's root (one step attempt), current for the block."""
    if not _enabled:
        yield INVALID_SPAN
        return
    with _tracer().start_as_current_span(
        name, context=run_context(trace_id), kind=SpanKind.INTERNAL, attributes=dict(attributes)
    ) as span:
        yield span


@contextmanager
def server_span(
    headers: Mapping[str, str], name: str, *, attributes: Mapping[str, Any]
) -> Iterator[Span]:
    """A server span continuing the caller's `traceparent`, current for the block."""
    if not _enabled:
        yield INVALID_SPAN
        return
    with _tracer().start_as_current_span(
        name,
        context=_PROPAGATOR.extract(headers),
        kind=SpanKind.SERVER,
        attributes=dict(attributes),
    ) as span:
        yield span


def traceparent(trace_id: str) -> str | None:
    """The W3C `traceparent` for a call made now: the current span, else the run's root; None
    when neither is a valid trace (the header is then left out)."""
    if _enabled:
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            return f"00-{current.trace_id:032x}-{current.span_id:016x}-{current.trace_flags:02x}"
    if not valid_trace_id(trace_id):
        return None
    return f"00-{trace_id}-{root_span_id(trace_id):016x}-01"


def trace_id_of(traceparent_header: str | None) -> str | None:
    """The trace id in a `traceparent` header, or None when it is not one."""
    if traceparent_header is None or len(traceparent_header) < 55:
        return None
    candidate = traceparent_header[3:35].lower()
    if traceparent_header[2] != "-" or not all(c in "0123456789abcdef" for c in candidate):
        return None
    return candidate if candidate != "0" * 32 else None
