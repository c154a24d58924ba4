"""Fixtures for the deployment checks: the chart rendered offline by Helm's own engine.

helm-python-sdk embeds Helm's Go template engine, linter and schema validator, so nothing here
needs a helm binary, a cluster or the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ingestion-platform"
PRODUCTION_VALUES = CHART / "values-production.yaml"
RELEASE = "rel"
NAMESPACE = "ingest"


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders (hooks and test pods included), parsed."""
    rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("__template__", path)
                manifests.append(document)
    return manifests


def production_values() -> dict[str, Any]:
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def default_manifests(chart: helm_python.Chart) -> list[dict[str, Any]]:
    return render(chart)


@pytest.fixture(scope="session")
def production_manifests(chart: helm_python.Chart) -> list[dict[str, Any]]:
    return render(chart, production_values())


@pytest.fixture(scope="session", params=["default", "production"])
def manifests(
    request: pytest.FixtureRequest,
    default_manifests: list[dict[str, Any]],
    production_manifests: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The chart rendered with the default values, then with values-production.yaml."""
    return default_manifests if request.param == "default" else production_manifests
