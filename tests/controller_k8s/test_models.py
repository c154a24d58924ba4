"""Model resources bind the platform's models: the Model kind's informer against the fake
Kubernetes API (see fake_kube_api.py), with the bindings in a real PostgreSQL schema and the
versions read from a real MLflow store."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from mlflow import MlflowClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from ml import registry
from services.orchestrator_controller.kubernetes.informer import Informer
from services.orchestrator_controller.kubernetes.models import (
    ModelResource,
    ModelResources,
    parse_model_resource,
    registry_version_resolver,
)
from tests.ml.test_registry import trained

from .fake_kube_api import FakeKubeApi
from .helpers import NAMESPACE

pytestmark = pytest.mark.timeout(120)
PLURAL = "models"


def model_resource(name: str, model: str, registered: str, alias: str = "staging") -> Any:
    return {
        "apiVersion": "ingestion.platform.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "registeredModelName": registered,
            "alias": alias,
            "agent": "data-converter",
            "baseline": {"name": "rules", "metric": "accuracy"},
        },
    }


@pytest.fixture
def uri(tmp_path: Path) -> str:
    """format_recognition_eu v1, its champion (it beat its baseline), also at `staging`."""
    uri = registry.local_tracking_uri(tmp_path / "mlflow")
    eu = registry.register(dataclasses.replace(trained(0.5), name="format_recognition_eu"), uri=uri)
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(
        "format_recognition_eu", "staging", eu.version
    )
    return uri


async def bindings(db: async_sessionmaker) -> dict[str, tuple[str, str, str, str]]:
    async with db() as session:
        rows = await session.execute(
            text("SELECT model, registered_model, alias, source, resource FROM model_bindings")
        )
        return {r.model: (r.registered_model, r.alias, r.source, r.resource) for r in rows}


def ready(resource: dict[str, Any]) -> tuple[str, str, str]:
    status = resource["status"]
    [condition] = [c for c in status["conditions"] if c["type"] == "Ready"]
    return status["phase"], condition["status"], condition["reason"]


async def test_model_resources_bind_models_and_report_in_their_status(
    fake_api: FakeKubeApi, api_client: client.ApiClient, db: async_sessionmaker, uri: str
) -> None:
    fake = fake_api
    models = ModelResources(db, resolve_version=registry_version_resolver(uri))
    sync = Informer(api_client, NAMESPACE, models)
    fake.apply(model_resource("fr", "format_recognition", "format_recognition_eu"), NAMESPACE)
    fake.apply(model_resource("fr-too", "format_recognition", "other"), NAMESPACE)
    fake.apply(model_resource("sd", "source_detection", "source_detection", "canary"), NAMESPACE)
    fake.apply(model_resource("typo", "format_recognitoin", "x"), NAMESPACE)

    await sync.resync()
    assert models.bindings == {
        "format_recognition": f"{NAMESPACE}/fr",
        "source_detection": f"{NAMESPACE}/sd",
    }
    assert await bindings(db) == {
        "format_recognition": ("format_recognition_eu", "staging", "kubernetes", f"{NAMESPACE}/fr"),
        "source_detection": ("source_detection", "canary", "kubernetes", f"{NAMESPACE}/sd"),
    }
    fr = fake.get("fr", NAMESPACE)
    assert ready(fr) == ("Registered", "True", "Bound")
    assert fr["status"]["registeredVersion"] == "1"
    assert ready(fake.get("fr-too", NAMESPACE)) == ("Failed", "False", "Conflict")
    assert ready(fake.get("sd", NAMESPACE)) == ("Pending", "False", "AliasNotSet")
    typo = fake.get("typo", NAMESPACE)
    assert ready(typo) == ("Failed", "False", "InvalidSpec")
    assert "format_recognitoin" in typo["status"]["conditions"][0]["message"]

    # Nothing changed: nothing is written again.
    patches = len(fake.status_patches())
    await sync.resync()
    assert len(fake.status_patches()) == patches

    # The resource edited, then deleted: the binding follows, then the model is its own again.
    fake.apply(
        model_resource("fr", "format_recognition", "format_recognition_eu", "champion"), NAMESPACE
    )
    await sync.resync()
    assert (await bindings(db))["format_recognition"][:2] == ("format_recognition_eu", "champion")
    assert ready(fake.get("fr", NAMESPACE)) == ("Registered", "True", "Bound")  # its champion
    fake.apply(
        model_resource("fr", "format_recognition", "format_recognition_eu", "canary"), NAMESPACE
    )
    await sync.resync()
    fr = fake.get("fr", NAMESPACE)
    assert ready(fr) == ("Pending", "False", "AliasNotSet")
    assert "registeredVersion" not in fr["status"]  # the version of before is not shown as now's
    fake.delete("fr", NAMESPACE)
    fake.delete("fr-too", NAMESPACE)
    await sync.resync()
    assert set(await bindings(db)) == {"source_detection"}


async def test_without_a_registry_the_binding_stands_and_says_so(
    fake_api: FakeKubeApi, api_client: client.ApiClient, db: async_sessionmaker
) -> None:
    fake = fake_api
    fake.apply(model_resource("rs", "retry_strategy", "retry_strategy", "champion"), NAMESPACE)
    await Informer(api_client, NAMESPACE, ModelResources(db)).resync()
    assert (await bindings(db))["retry_strategy"][2] == "kubernetes"
    rs = fake.get("rs", NAMESPACE)
    assert ready(rs) == ("Registered", "True", "Bound") and "registeredVersion" not in rs["status"]


def test_the_five_names_agree_everywhere_and_the_examples_bind_what_training_registers() -> None:
    from ml.bindings import MODEL_NAMES
    from ml.train import model_modules

    root = Path(__file__).resolve().parents[2] / "helm/ingestion-platform"
    crd = yaml.safe_load((root / "crds/models.ingestion.platform.io.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(MODEL_NAMES) == set(model_modules()) == set(spec["properties"]["model"]["enum"])
    for path in sorted((root / "examples/models").glob("*.yaml")):
        example = parse_model_resource(yaml.safe_load(path.read_text()))
        assert isinstance(example, ModelResource), (path.name, example)
        # `make models` registers each model under its own name: an example naming another
        # would leave the services on their baselines.
        assert (example.registered_model, example.alias) == (example.model, "champion"), path
