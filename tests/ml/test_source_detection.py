"""Source detection for real: quick training into a SQLite MLflow store, beating the rules on
frameworks it never saw; the connector serving the champion; the collector following `auto`
pagination of conventions the rules miss (OData, Spring Data REST) against a real HTTP server,
and falling back to the rules, and saying so, without a registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app as create_collector
from agents.data_connector.app import create_app as create_connector
from ml import registry
from ml.source_detection.dlt_reference import DltReference
from ml.source_detection.rules import RulesDetector
from ml.source_detection.train import NAME, train
from ml.train import TrainingContext
from shared.db.session import asyncpg_dsn
from tests.agents.source_api import make_order
from tests.conftest import DATABASE_URL, asgi_client, service_auth
from tests.serving import serve

ORDERS = [make_order(i) for i in range(1, 26)]
PAGE = 10


def _page(request: Request) -> tuple[int, list[dict[str, Any]], bool]:
    skip = int(request.query_params.get("$skiptoken", request.query_params.get("page", 0)))
    rows = ORDERS[skip * PAGE : (skip + 1) * PAGE]
    return skip, rows, (skip + 1) * PAGE < len(ORDERS)


def conventions_app() -> FastAPI:
    """Orders served in two conventions today's rules get wrong."""
    app = FastAPI()

    @app.get("/odata/Orders")
    async def odata(request: Request) -> dict[str, Any]:
        skip, rows, more = _page(request)
        body: dict[str, Any] = {"@odata.context": "/odata/$metadata#Orders", "value": rows}
        if more:
            body["@odata.nextLink"] = f"{request.base_url}odata/Orders?$skiptoken={skip + 1}"
        return body

    @app.get("/spring/orders")
    async def spring(request: Request) -> dict[str, Any]:
        page, rows, more = _page(request)
        links: dict[str, Any] = {"self": {"href": f"/spring/orders?page={page}"}}
        if more:
            links["next"] = {"href": f"/spring/orders?page={page + 1}&size={PAGE}"}
        return {
            "_embedded": {"orders": rows},
            "_links": links,
            "page": {"size": PAGE, "totalElements": len(ORDERS), "totalPages": 3, "number": page},
        }

    return app


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """One quick training registered in a fresh SQLite MLflow store (shared by the module)."""
    uri = registry.local_tracking_uri(Path(tmp_path_factory.mktemp("mlflow")))
    trained = train(TrainingContext(quick=True))
    registered = registry.register(trained, uri=uri)
    yield uri, (trained, registered)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve(conventions_app()) as url:
        yield url


def test_quick_training_beats_the_rules_on_held_out_frameworks(trained_store) -> None:
    uri, (trained, registered) = trained_store
    assert trained.model_score > trained.baseline_score
    for figure in ("records_path_accuracy", "pagination_accuracy"):
        assert trained.details[figure] > trained.details[f"baseline_{figure}"], figure
    assert registered.promoted and registry.champion_version(NAME, uri=uri) == registered.version
    # The score callable is the held-out evaluation: the rules score what the baseline said.
    assert trained.score(RulesDetector()) == pytest.approx(trained.baseline_score)
    loaded = registry.load(NAME, uri=uri)
    families = trained.params["held_out_families"].split(",")
    assert "odata" in families and "odata" not in trained.params["training_families"]
    # What the registry hands back is the model that was measured, not a re-fit.
    assert trained.score(loaded.predictor) == pytest.approx(trained.model_score)


def test_the_model_beats_dlts_paginator_detection_on_held_out_frameworks(trained_store) -> None:
    _, (trained, _) = trained_store
    assert trained.references["dlt_pagination"] == trained.details["dlt_pagination_accuracy"]
    assert trained.details["pagination_accuracy"] > trained.details["dlt_pagination_accuracy"]
    assert "dlt" in trained.notes and "PaginatorFactory" in trained.notes


def test_dlt_reference_answers_what_dlts_own_detection_finds() -> None:
    dlt = DltReference()
    drf = json.dumps(
        {"count": 90, "next": "https://api.example.com/orders?page=2", "results": ORDERS[:3]}
    )
    found = dlt.detect("https://api.example.com/orders", 200, {}, drf.encode())
    assert found.records_path == "results"
    assert found.pagination == {"type": "next_link_in_body", "next_path": "next"}
    github = {"Link": '<https://api.example.com/orders?page=2>; rel="next"'}
    found = dlt.detect("https://api.example.com/orders", 200, github, json.dumps(ORDERS).encode())
    assert found.records_path == "" and found.pagination == {"type": "link_header"}
    # OData's next link is under a key that does not start with "next": dlt sees one page.
    odata = {"@odata.nextLink": "https://x.example/Orders?$skiptoken=1", "value": ORDERS[:3]}
    found = dlt.detect("https://x.example/Orders", 200, {}, json.dumps(odata).encode())
    assert found.records_path == "value" and found.pagination == {"type": "none"}


async def test_connector_serves_the_champion_and_reports_its_version(
    common_env: dict, trained_store, api: str
) -> None:
    uri, (_, registered) = trained_store
    settings = AgentSettings(
        **common_env, mlflow_tracking_uri=uri, allow_private_hosts=["127.0.0.1"]
    )
    async with asgi_client(create_connector(settings)) as client:
        health = (await client.get("/health")).json()
        slot = health["checks"][f"model:{NAME}"]
        assert slot == {"model": NAME, "version": registered.version, "source": "registry"}
        source = {"kind": "http", "url": f"{api}/odata/Orders"}
        for action in ("describe", "test_connection"):
            resp = await client.post(
                f"/api/v1/{action}", json={"source": source}, headers=service_auth()
            )
            assert resp.status_code == 200, resp.text
            found = resp.json()["detection"]
            assert found["decided_by"] == slot, action
            assert found["kind"] == "rest_json" and 0 < found["confidence"] <= 1
            assert found["records_path"] == "value"
            assert found["pagination"] == {
                "type": "next_link_in_body",
                "next_path": "@odata.nextLink",
            }
        database = {"kind": "postgres", "url": asyncpg_dsn(DATABASE_URL)}
        resp = await client.post(
            "/api/v1/test_connection", json={"source": database}, headers=service_auth()
        )
        assert resp.json()["reachable"] is True
        assert resp.json()["detection"]["kind"] == "postgres"
        assert resp.json()["detection"]["decided_by"] == slot


async def _collect(settings: AgentSettings, body: dict[str, Any]) -> dict[str, Any]:
    headers = {**service_auth(), "X-Run-Id": "auto-tests", "X-Step-Id": uuid.uuid4().hex}
    async with asgi_client(create_collector(settings)) as client:
        resp = await client.post("/api/v1/collect", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    return [
        json.loads(line) for f in out["files"] for line in Path(f["uri"]).read_text().splitlines()
    ]


@pytest.mark.parametrize(
    ("path", "records_path", "pagination"),
    [
        ("/odata/Orders", None, {"type": "next_link", "next_path": "@odata.nextLink"}),
        (
            "/spring/orders",
            "_embedded.orders",
            {"type": "next_link", "next_path": "_links.next.href"},
        ),
    ],
)
async def test_collect_auto_follows_conventions_the_rules_miss(
    common_env: dict,
    trained_store,
    api: str,
    path: str,
    records_path: str | None,
    pagination: dict[str, Any],
) -> None:
    uri, (_, registered) = trained_store
    source = {"kind": "http", "url": f"{api}{path}"}
    body = {"source": source, "pagination": "auto", "records_path": "auto"}
    with_model = AgentSettings(
        **common_env, mlflow_tracking_uri=uri, allow_private_hosts=["127.0.0.1"]
    )
    out = await _collect(with_model, body)
    assert _rows(out) == ORDERS and out["pages"] == 3 and out["complete"] is True
    auto = out["autodetect"]
    assert auto["decided_by"] == {
        "model": NAME,
        "version": registered.version,
        "source": "registry",
    }
    assert {k: auto["pagination"][k] for k in pagination} == pagination
    assert auto["records_path"] == (records_path or "value")

    # No registry: the rules decide, the output says so, and they stop after the first page
    # (OData: no next link they know) or read the wrong list (Spring: the envelope itself).
    rules = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    out = await _collect(rules, body)
    assert out["autodetect"]["decided_by"] == {"model": NAME, "version": None, "source": "baseline"}
    assert _rows(out) != ORDERS


async def test_explicit_pagination_is_untouched_by_auto_records(common_env: dict, api: str) -> None:
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    body = {
        "source": {"kind": "http", "url": f"{api}/odata/Orders"},
        "pagination": {"type": "next_link", "next_path": "@odata.nextLink"},
        "records_path": "auto",
    }
    out = await _collect(settings, body)
    assert _rows(out) == ORDERS
    assert out["autodetect"]["pagination"] == "given"
    assert out["autodetect"]["records_path"] == "value"


def test_httpx_is_what_the_rules_use() -> None:
    """The rules adapter reads Link headers the way the connector does (httpx's parser)."""
    headers = {"Content-Type": "application/json", "Link": '</o?page=2>; rel="next"'}
    found = RulesDetector().detect("https://api.example.com/o", 200, headers, b'[{"id": 1}]')
    assert found.pagination == {"type": "link_header"} and found.records_path == ""
    assert httpx.Response(200, headers=headers).links["next"]["url"] == "/o?page=2"


def test_the_standard_workflow_accepts_auto() -> None:
    """`pagination: auto` and `records_path: auto` pass the controller's input check."""
    from services.orchestrator_controller.runs.inputs import bind_inputs
    from shared.spec.loader import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "workflows" / "standard.yaml")
    given = {
        "source": {"kind": "http", "url": "https://api.example.com/orders"},
        "pagination": "auto",
        "records_path": "auto",
        "dataset": "orders",
        "primary_key": ["id"],
    }
    bound = bind_inputs(spec, given)
    assert bound["pagination"] == "auto" and bound["records_path"] == "auto"
    required = {k: given[k] for k in ("source", "dataset", "primary_key")}
    defaults = bind_inputs(spec, required)  # the defaults are unchanged
    assert defaults["pagination"] == {"type": "none"} and defaults["records_path"] is None
