"""Model bindings: an admin (or a Model resource) chooses the registered model and alias a
platform model is served from, and every service holding it follows at its next refresh,
without a restart. Real MLflow (a SQLite store), real PostgreSQL, the controller and an agent
in-process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from agents.base.settings import AgentSettings
from agents.data_converter.app import create_app as create_converter
from ml import registry
from ml.bindings import MODEL_NAMES, database_binding
from ml.slot import ModelSlot
from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.models import ModelBinding
from tests.conftest import asgi_client, fresh_schema, service_auth
from tests.ml.test_registry import Threshold, trained

ADMIN = {"Authorization": "Bearer k-models-admin"}
READER = {"Authorization": "Bearer k-models-reader"}
MODEL = "format_recognition"
EU = {"registered_model": "format_recognition_eu", "alias": "staging"}


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own: bindings are per install, and other tests load models."""
    yield from fresh_schema()


@pytest.fixture
async def api(common_env: dict[str, Any], schema: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ControllerSettings(
        **{**common_env, "db_schema": schema},
        api_keys=["k-models-admin", {"id": "reader", "key": "k-models-reader", "scopes": ["read"]}],
        engine_url="http://127.0.0.1:9",
        start_loops=False,
    )
    app = create_app(settings)
    async with asgi_client(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def uri(tmp_path: Path) -> str:
    """A store holding format_recognition v1 (champion) and format_recognition_eu v1 at
    `staging`: toy predictors, told apart by their cut."""
    uri = registry.local_tracking_uri(tmp_path / "mlflow")
    registry.register(dataclasses.replace(trained(0.2), name=MODEL), uri=uri)
    eu = registry.register(dataclasses.replace(trained(0.5), name=EU["registered_model"]), uri=uri)
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(
        EU["registered_model"], "staging", eu.version
    )
    return uri


async def test_an_admin_binds_and_unbinds_a_model(api: httpx.AsyncClient) -> None:
    listed = await api.get("/models", headers=READER)
    assert listed.status_code == 200, listed.text
    assert [m["model"] for m in listed.json()] == list(MODEL_NAMES)
    assert all(
        (m["registered_model"], m["alias"], m["source"]) == (m["model"], "champion", "default")
        for m in listed.json()
    )

    bound = await api.put(f"/models/{MODEL}", json=EU, headers=ADMIN)
    assert bound.status_code == 200, bound.text
    assert {k: bound.json()[k] for k in ("model", "registered_model", "alias", "source")} == {
        "model": MODEL,
        **EU,
        "source": "api",
    }
    assert bound.json()["updated_by"] and bound.json()["updated_at"]
    shown = (await api.get(f"/models/{MODEL}", headers=READER)).json()
    assert (shown["registered_model"], shown["alias"]) == (EU["registered_model"], "staging")

    assert (await api.delete(f"/models/{MODEL}", headers=ADMIN)).status_code == 204
    back = (await api.get(f"/models/{MODEL}", headers=READER)).json()
    assert (back["registered_model"], back["alias"], back["source"]) == (
        MODEL,
        "champion",
        "default",
    )


async def test_bad_bindings_are_refused_and_change_nothing(api: httpx.AsyncClient) -> None:
    unknown = await api.put("/models/nope", json=EU, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_model"
    assert (await api.get("/models/nope", headers=READER)).status_code == 404
    bad_alias = await api.put(
        f"/models/{MODEL}", json={**EU, "alias": "Not An Alias"}, headers=ADMIN
    )
    assert bad_alias.status_code == 422 and "alias" in bad_alias.text
    assert (await api.put(f"/models/{MODEL}", json=EU, headers=READER)).status_code == 403
    assert (await api.put(f"/models/{MODEL}", json=EU)).status_code == 401
    assert (await api.get(f"/models/{MODEL}", headers=READER)).json()["source"] == "default"

    # A binding a Model resource made is the resource's to change.
    async with api.app.state.sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
        session.add(
            ModelBinding(
                model=MODEL, source="kubernetes", resource="ml/fr", **EU, updated_by="ml/fr"
            )
        )
    for response in (
        await api.put(f"/models/{MODEL}", json={"registered_model": MODEL}, headers=ADMIN),
        await api.delete(f"/models/{MODEL}", headers=ADMIN),
    ):
        assert response.status_code == 409 and "ml/fr" in response.json()["message"]
    assert (await api.get(f"/models/{MODEL}", headers=READER)).json()["source"] == "kubernetes"


async def test_a_slot_follows_its_binding_without_a_restart(
    api: httpx.AsyncClient, uri: str
) -> None:
    sessionmaker = api.app.state.sessionmaker  # type: ignore[attr-defined]
    slot = ModelSlot(
        MODEL,
        Threshold(0.0),
        tracking_uri=uri,
        refresh_s=3600,
        binding=database_binding(lambda: sessionmaker, MODEL),
    )
    await slot.start()
    try:
        assert slot.current.predictor == Threshold(0.2)
        assert slot.current.provenance() == {"model": MODEL, "version": "1", "source": "registry"}

        assert (await api.put(f"/models/{MODEL}", json=EU, headers=ADMIN)).status_code == 200
        await slot.refresh()
        assert slot.current.predictor == Threshold(0.5)
        assert slot.current.provenance() == {
            "model": MODEL,
            "version": "1",
            "source": "registry",
            **EU,
        }
        assert slot.health()[0] == "ok"

        # An alias nobody set: the model in use keeps serving, and health says why.
        missing = {**EU, "alias": "canary"}
        assert (await api.put(f"/models/{MODEL}", json=missing, headers=ADMIN)).status_code == 200
        await slot.refresh()
        assert slot.current.predictor == Threshold(0.5)
        state, detail = slot.health()
        assert state == "degraded" and "format_recognition_eu@canary" in detail["problem"]

        assert (await api.delete(f"/models/{MODEL}", headers=ADMIN)).status_code == 204
        await slot.refresh()
        assert slot.current.predictor == Threshold(0.2) and slot.health()[0] == "ok"
    finally:
        await slot.stop()


async def test_an_agent_starts_on_the_bound_model(
    api: httpx.AsyncClient, uri: str, common_env: dict[str, Any], schema: str
) -> None:
    assert (await api.put(f"/models/{MODEL}", json=EU, headers=ADMIN)).status_code == 200
    settings = AgentSettings(**{**common_env, "db_schema": schema}, mlflow_tracking_uri=uri)
    async with asgi_client(create_converter(settings)) as agent:
        health = (await agent.get("/health", headers=service_auth())).json()
    assert health["checks"][f"model:{MODEL}"] == {
        "model": MODEL,
        "version": "1",
        "source": "registry",
        **EU,
    }
