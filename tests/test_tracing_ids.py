"""The traceparent a step call sends: the run's root span from its trace id, or no header when
the stored id is not a W3C trace id (never an exception in the step call)."""

from __future__ import annotations

import uuid

from shared.tracing import root_span_id, traceparent, valid_trace_id


def test_a_run_trace_id_gives_its_root_span() -> None:
    trace_id = uuid.uuid4().hex
    assert valid_trace_id(trace_id)
    assert traceparent(trace_id) == f"00-{trace_id}-{root_span_id(trace_id):016x}-01"


def test_an_id_that_is_not_a_trace_id_sends_no_header() -> None:
    for bad in ("t", "", "0" * 32, "G" * 32, uuid.uuid4().hex.upper(), uuid.uuid4().hex + "0"):
        assert not valid_trace_id(bad)
        assert traceparent(bad) is None
