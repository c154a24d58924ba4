"""The OpenLineage events of runs driven through the state machine on a real PostgreSQL, with
the merger's load records: names, facets, and validity against the spec's JSON schemas."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openlineage.client.serde import Serde
from sqlalchemy.ext.asyncio import async_sessionmaker

from agents.data_merger.records import record_load
from services.orchestrator_controller.events.service import run_events
from services.orchestrator_controller.lineage.builder import (
    RUN_STATES,
    LineageNames,
    build_event,
)
from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from shared.spec.models import WorkflowSpec
from shared.state.runs import NewRun, create_runs, start_runs
from shared.state.steps import AttemptResult, ClaimedStep, claim_steps, record_results
from tests.conftest import DATABASE_URL
from tests.openlineage_schema import schema_errors

NAMES = LineageNames(namespace="ingestion-platform", target_database_url=DATABASE_URL)
SPEC = {
    "name": "lineage_orders",
    "inputs": {"folder": {"type": "string"}, "remote_url": {"type": "string"}},
    "steps": [
        {
            "id": "collect_files",
            "agent": "data-collector",
            "action": "collect",
            "params": {"source": {"kind": "file", "root": "${inputs.folder}", "glob": "*.csv"}},
        },
        {
            "id": "collect_api",
            "agent": "data-collector",
            "action": "collect",
            "params": {
                "source": {"kind": "http", "url": "https://api.shop.test:8443/v1/orders?page=2"}
            },
        },
        {
            "id": "collect_db",
            "agent": "data-collector",
            "action": "collect",
            "params": {
                "source": {
                    "kind": "postgres",
                    "url": "postgresql://reader@db.shop.test:5433/shop",
                    "db_schema": "sales",
                    "table": "orders",
                }
            },
        },
        {
            "id": "fetch",
            "agent": "data-fetch-retry",
            "action": "fetch",
            "params": {"url": "${inputs.remote_url}"},
        },
        {
            # Its source is known only once `fetch` has run.
            "id": "stage",
            "agent": "data-collector",
            "action": "collect",
            "depends_on": ["fetch"],
            "params": {"source": {"kind": "file", "url": "${steps.fetch.output.uri}"}},
        },
        {
            "id": "merge",
            "agent": "data-merger",
            "action": "merge",
            "depends_on": ["collect_files", "collect_api", "collect_db", "stage"],
            "params": {"dataset": "orders", "batches": []},
        },
    ],
}
INPUTS = {"folder": "/srv/drop/orders/", "remote_url": "http://files.shop.test/exports/o.json"}


@pytest.fixture
async def db(module_schema: str) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=module_schema))
    yield create_sessionmaker(engine)
    await engine.dispose()


class Run:
    """One run driven as an engine would ."""

    def __init__(self, db: async_sessionmaker, schema: str, spec: dict[str, Any]) -> None:
        self.db, self.schema, self.spec = db, schema, spec
        self.id = uuid.uuid4()

    async def start(self, inputs: dict[str, Any]) -> None:
        spec = WorkflowSpec.model_validate(self.spec)
        async with self.db() as session, session.begin():
            await create_runs(
                session, [NewRun(spec=spec, inputs=inputs, run_id=self.id)], schema=self.schema
            )
        async with self.db() as session, session.begin():
            assert await start_runs(session, [self.id], schema=self.schema)

    async def claim(self) -> dict[str, ClaimedStep]:
        async with self.db() as session, session.begin():
            claimed = await claim_steps(
                session, owner="w1", limit=1000, lease_s=30, schema=self.schema
            )
        assert all(c.run_id == self.id for c in claimed), "claimed another test's steps"
        return {c.step_id: c for c in claimed}

    async def record(self, *results: AttemptResult) -> None:
        async with self.db() as session, session.begin():
            await record_results(session, list(results), schema=self.schema)

    async def lineage(self) -> list[dict[str, Any]]:
        """The run's events as the lineage loop builds them, in sequence order, as JSON."""
        async with self.db() as session:
            events = [
                e for e in await run_events(session, run_id=self.id) if e["type"] in RUN_STATES
            ]
            built = [await build_event(session, e, NAMES) for e in events]
        return [json.loads(Serde.to_json(b)) for b in built if b is not None]


def ok(step: ClaimedStep, output: Any = None) -> AttemptResult:
    return AttemptResult(step=step, outcome="succeeded", output=output or {"ok": True}, worker="w1")


def merge_result(**extra: Any) -> dict[str, Any]:
    return {
        "dataset": "orders",
        "version": 3,
        "inserted": 130,
        "updated": 10,
        "written": 140,
        "rows": 140,
        "schema": {"order_id": "Int64", "email": "String", "amount": "Float64"},
        "write_disposition": "merge",
        "strategy": "upsert",
        **extra,
    }


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


async def test_a_run_with_loads_gives_a_valid_start_and_complete(
    db: async_sessionmaker, module_schema: str
) -> None:
    run = Run(db, module_schema, SPEC)
    await run.start(INPUTS)
    first = await run.claim()
    await run.record(*(ok(s, {"uri": "s3://landing/orders/o.json"}) for s in first.values()))
    await run.record(ok((await run.claim())["stage"]))
    delta = f"/var/data/datasets/orders_{run.id.hex[:6]}"
    for fingerprint, written, size in (("a", 100, 4000), ("b", 40, 1500)):
        result = merge_result(target="delta", uri=delta, written=written, bytes=size)
        await record_load(db, result, fingerprint=fingerprint, run_id=str(run.id), step_id="merge")
    table = f"{module_schema}_data.orders"
    pg_result = merge_result(target="postgres", table=table, version=7)
    await record_load(db, pg_result, fingerprint="c", run_id=str(run.id), step_id="merge")
    await run.record(ok((await run.claim())["merge"]))

    start, complete = await run.lineage()

    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    for event in (start, complete):
        assert schema_errors(event) == []
        assert event["run"]["runId"] == str(run.id)
        assert event["job"] == {
            "namespace": "ingestion-platform",
            "name": "lineage_orders",
            "facets": event["job"]["facets"],
        }
        assert event["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    sources = [
        ("file", "/srv/drop/orders"),
        ("https://api.shop.test:8443", "/v1/orders"),
        ("postgres://db.shop.test:5433", "shop.sales.orders"),
        ("http://files.shop.test", "/exports/o.json"),
    ]
    # At the start the staged file is not known yet; at the end it is.
    assert names(start["inputs"]) == sources
    assert start["outputs"] == []
    assert names(complete["inputs"]) == [*sources, ("s3://landing", "orders/o.json")]

    outputs = {d["namespace"] + " " + d["name"]: d for d in complete["outputs"]}
    assert set(outputs) == {f"file {delta}", f"postgres://127.0.0.1:5432 test.{table}"}
    lake = outputs[f"file {delta}"]
    assert lake["outputFacets"]["outputStatistics"]["rowCount"] == 140  # both loads
    assert lake["outputFacets"]["outputStatistics"]["size"] == 5500
    assert [(f["name"], f["type"]) for f in lake["facets"]["schema"]["fields"]] == [
        ("amount", "Float64"),
        ("email", "String"),
        ("order_id", "Int64"),
    ]
    assert lake["facets"]["version"]["datasetVersion"] == "3"
    pg = outputs[f"postgres://127.0.0.1:5432 test.{table}"]
    assert pg["outputFacets"]["outputStatistics"] == {
        "_producer": pg["outputFacets"]["outputStatistics"]["_producer"],
        "_schemaURL": pg["outputFacets"]["outputStatistics"]["_schemaURL"],
        "rowCount": 140,
        # PostgreSQL loads say no byte count: the size is left out rather than guessed.
    }
    assert pg["facets"]["version"]["datasetVersion"] == "7"


async def test_a_failed_run_gives_fail_with_its_error_and_what_it_read(
    db: async_sessionmaker, module_schema: str
) -> None:
    run = Run(db, module_schema, SPEC)
    await run.start(INPUTS)
    first = await run.claim()
    failing = AttemptResult(
        step=first["fetch"],
        outcome="failed",
        worker="w1",
        error={"code": "http_404", "message": "404 from files.shop.test", "retryable": False},
    )
    await run.record(*(ok(s) for name, s in first.items() if name != "fetch"), failing)

    start, fail = await run.lineage()

    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert schema_errors(fail) == []
    assert "404 from files.shop.test" in fail["run"]["facets"]["errorMessage"]["message"]
    # `stage` never ran, so the run read what the four first steps were asked for.
    assert len(fail["inputs"]) == 4
    assert fail["outputs"] == []


async def test_the_schemas_catch_a_broken_event(db: async_sessionmaker, module_schema: str) -> None:
    """The validation itself can fail: a missing field, a bad format, a facet under a wrong key."""
    run = Run(db, module_schema, SPEC)
    await run.start(INPUTS)
    [start] = await run.lineage()
    assert schema_errors(start) == []
    assert schema_errors({**start, "producer": None})
    assert schema_errors({**start, "run": {"runId": "run-1"}})
    engine = start["run"]["facets"]["processing_engine"]
    assert schema_errors({**start, "run": {**start["run"], "facets": {"engine": engine}}})
