"""OpenLineage run events from the running platform: to an OpenLineage HTTP endpoint run by
this test (OPENLINEAGE_URL), and to the `ingestion.lineage` stream when none is configured."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.e2e.conftest import Observed, Platform
from tests.e2e.test_run_logs import submit, unreachable
from tests.lineage_receiver import LineageReceiver
from tests.openlineage_schema import schema_errors


@pytest.fixture(scope="module")
def lineaged(observed: Observed) -> tuple[Platform, LineageReceiver]:
    return observed.platform, observed.lineage


def _until(found: Callable[[], list[dict[str, Any]]], states: list[str]) -> list[dict[str, Any]]:
    """The events `found()` returns once their types are `states` (what else arrives fails)."""
    deadline = time.monotonic() + 20
    while True:
        events = found()
        if [e["eventType"] for e in events] == states or time.monotonic() > deadline:
            assert [e["eventType"] for e in events] == states, events
            return events
        time.sleep(0.1)


def _test_run(platform: Platform) -> tuple[str, str]:
    dataset = f"orders_{uuid.uuid4().hex[:6]}"
    remote = platform.samples_url("remote/orders_api.json")
    run_id = submit(
        platform, {"workflow": "test", "inputs": {"remote_url": remote, "dataset": dataset}}
    )
    assert platform.wait_for_run(run_id)["status"] == "SUCCEEDED"
    return run_id, dataset


def test_a_run_of_the_test_workflow_gives_start_and_complete(
    lineaged: tuple[Platform, LineageReceiver],
) -> None:
    platform, receiver = lineaged
    run_id, dataset = _test_run(platform)

    start, complete = _until(lambda: receiver.of_run(run_id), ["START", "COMPLETE"])
    assert schema_errors(start) == [] and schema_errors(complete) == []
    assert start["job"]["namespace"] == complete["job"]["namespace"] == "e2e-ingestion"
    assert start["job"]["name"] == complete["job"]["name"] == "test"
    sources = {(d["namespace"], d["name"]) for d in complete["inputs"]}
    assert sources == {
        ("file", "samples/test"),  # the CSV folder, as the spec names it
        (f"http://127.0.0.1:{platform.ports.samples}", "/remote/orders_api.json"),
    }
    [merged] = complete["outputs"]
    lake = Path(platform.data_root).resolve() / "datasets" / dataset
    assert (merged["namespace"], merged["name"]) == ("file", str(lake))
    assert merged["outputFacets"]["outputStatistics"]["rowCount"] == 140
    assert merged["outputFacets"]["outputStatistics"]["size"] > 0
    columns = {f["name"] for f in merged["facets"]["schema"]["fields"]}
    assert {"order_id", "email", "amount"} <= columns
    assert set(receiver.authorizations) == {"Bearer e2e-lineage-key"}


def test_a_failing_run_gives_fail(lineaged: tuple[Platform, LineageReceiver]) -> None:
    platform, receiver = lineaged
    spec = unreachable()
    run_id = submit(platform, {"spec": spec, "inputs": {}})
    assert platform.wait_for_run(run_id)["status"] == "FAILED"

    start, fail = _until(lambda: receiver.of_run(run_id), ["START", "FAIL"])
    assert schema_errors(fail) == []
    assert fail["run"]["facets"]["errorMessage"]["message"]
    url = spec["steps"][0]["params"]["url"]
    assert [d["namespace"] + d["name"] for d in fail["inputs"]] == [url]


def test_without_an_endpoint_lineage_goes_to_the_lineage_stream(platform: Platform) -> None:
    """The shared platform has no OPENLINEAGE_URL: its events are kept on a Redis stream."""
    client = redis.Redis.from_url(REDIS_URL)
    stream = platform.stream_prefix + "ingestion.lineage"
    run_id, dataset = _test_run(platform)

    def on_stream() -> list[dict[str, Any]]:
        entries: Any = client.xrange(stream)
        events = [json.loads(fields[b"event"]) for _, fields in entries]
        return [e for e in events if e["run"]["runId"] == run_id]

    start, complete = _until(on_stream, ["START", "COMPLETE"])
    client.close()
    assert schema_errors(complete) == []
    assert complete["job"] == {**complete["job"], "namespace": "ingestion-platform", "name": "test"}
    [merged] = complete["outputs"]
    assert merged["name"].endswith(f"/datasets/{dataset}")
    assert merged["outputFacets"]["outputStatistics"]["rowCount"] == 140
